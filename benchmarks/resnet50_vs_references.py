"""kzoo's ResNet-50 against keras.applications' (and torchvision's, where installed), as
ratios measured in one process, with each row's fraction of the machine's matmul peak.

    python benchmarks/resnet50_vs_references.py [--batch 32] [--steps 5]

Rows: inference as a compiled graph (tf.function), inference with XLA, and a training
step (forward, backward, SGD with momentum; kzoo: the engine's `make_steps`, Keras:
`train_on_batch`). FLOPs: 2 per multiply-add, 3 passes' worth for a training step.
Prints Markdown for docs/performance.md.
"""

import argparse
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.train.engine import make_steps  # noqa: E402
from kzoo.utils import count_macs  # noqa: E402
from timing import best, sgemm_peak  # noqa: E402  (benchmarks/timing.py)


def inference(model, x, xla, warmup, steps):
    forward = tf.function(lambda x: model(x, training=False), jit_compile=xla)
    return best(lambda: forward(x).numpy(), steps, warmup)


def kzoo_training(model, batch, warmup, steps):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    train_step, _ = make_steps(model, optimizer, tf.distribute.get_strategy(), global_batch=len(batch[0]),
                               classes=1000, weight_decay=1e-4, xla=False)
    return best(lambda: float(train_step(batch)[0]), steps, warmup)


def keras_training(model, batch, warmup, steps):
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy())
    return best(lambda: model.train_on_batch(*batch), steps, warmup)


def torch_rows(batch_size, warmup, steps):
    """(inference s, training s) of torchvision's resnet50, or None where not installed."""
    try:
        import torch
        import torchvision
    except ImportError:
        return None
    model = torchvision.models.resnet50()
    x = torch.randn(batch_size, 3, 224, 224)
    y = torch.randint(0, 1000, (batch_size,))
    model.eval()
    with torch.no_grad():
        infer = best(lambda: model(x), steps, warmup)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    return infer, best(step, steps, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, 224, 224, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 1000, args.batch), tf.int32)
    peak = sgemm_peak()
    ours = kzoo.resnet50(classifier_activation=None)
    theirs = keras.applications.ResNet50(weights=None, classifier_activation=None)
    macs = count_macs(ours)
    print(f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}, batch {args.batch}; sgemm peak {2 * peak / 1e9:.0f} GFLOP/s; "
          f"ResNet-50 {macs / 1e9:.2f} GMAC per image\n")
    print("| row | kzoo images/s | kzoo of peak | keras.applications images/s | ratio | torchvision images/s "
          "| ratio |\n|---|---|---|---|---|---|---|")
    torch_times = torch_rows(args.batch, args.warmup, args.steps)
    rows = [("inference, graph", lambda m: inference(m, x, False, args.warmup, args.steps), 1, 0),
            ("inference, XLA", lambda m: inference(m, x, True, args.warmup, args.steps), 1, None),
            ("training step", None, 3, 1)]
    for name, timed, passes, torch_index in rows:
        if timed is None:
            mine = kzoo_training(ours, (x, y), args.warmup, args.steps)
            other = keras_training(theirs, (x, y), args.warmup, args.steps)
        else:
            mine, other = timed(ours), timed(theirs)
        torch_cells = "| |"
        if torch_times is not None and torch_index is not None:
            torch_cells = f"| {args.batch / torch_times[torch_index]:.1f} | {torch_times[torch_index] / mine:.2f}x |"
        print(f"| {name} | {args.batch / mine:.1f} | {passes * macs * args.batch / mine / peak:.0%} | "
              f"{args.batch / other:.1f} | {other / mine:.2f}x {torch_cells}", flush=True)


if __name__ == "__main__":
    main()
