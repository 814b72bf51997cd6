"""kzoo in float32 and mixed_bfloat16 against each dtype's matmul peak and against
keras.applications, measured in one process.

    python benchmarks/precision.py [--batch 16] [--steps 5] [--rows infer,predict,train]

Per precision and row: images/s, the fraction of that dtype's matmul peak (a 4096^3
tf.matmul in float32, then in bfloat16, in this process; 2 FLOPs per multiply-add, a
training step 3 passes' worth) and the ratio against keras.applications' ResNet50 built
under the same dtype policy. Rows:
  infer    kzoo.resnet50(dtype=...) called with training=False in a tf.function
  predict  kzoo.load("resnet50", dtype=...).predict on uint8 images (its centre views included)
  train    the engine's train step (kzoo.train.engine.make_steps; Keras: train_on_batch)
The bfloat16/float32 speed-up of each row follows. Prints Markdown for docs/performance.md;
the CPU (model and AVX2 / AVX-512 / AMX) heads it. Run with ONEDNN_VERBOSE=1 to see which
oneDNN kernels run (on AMX: brg_conv_fwd:avx512_core_amx_bf16 and kin).
"""

import argparse
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.models.common import dtype_policy  # noqa: E402
from kzoo.train.engine import make_steps  # noqa: E402
from kzoo.utils import count_macs  # noqa: E402
from kzoo.utils.precision import compute_dtype, cpu_flags, has_amx  # noqa: E402
from timing import best  # noqa: E402  (benchmarks/timing.py)

MEASURED = ("float32", "mixed_bfloat16")  # mixed_float16 is for GPUs


def matmul_peak(dtype, n=4096, repeats=5):
    """Multiply-adds per second of the fastest n^3 tf.matmul in `dtype` in this process."""
    a, b = (tf.cast(tf.random.normal((n, n)), dtype) for _ in range(2))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
    return n**3 / best(lambda: matmul().numpy(), repeats)


def cpu_line():
    flags = cpu_flags()
    kinds = [k for k, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX-BF16", "amx_bf16")) if f in flags]
    model = "?"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith(("model name", "model\t"))]
        model = " / ".join(dict.fromkeys(names[:2]))
    return f"{model or platform.processor()} ({', '.join(kinds) or 'no AVX2'}), {os.cpu_count()} cores"


def infer_seconds(model, x, steps):
    forward = tf.function(lambda x: model(x, training=False))
    return best(lambda: forward(x).numpy(), steps, warmup=2)


def train_seconds(model, batch, steps, precision, keras_fit=False):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if keras_fit:
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return best(lambda: model.train_on_batch(*batch), steps, warmup=2)
    train_step, _ = make_steps(model, optimizer, tf.distribute.get_strategy(), global_batch=len(batch[0]),
                               classes=1000, weight_decay=1e-4, loss_scale=precision == "mixed_float16")
    return best(lambda: float(train_step(batch)[0]), steps, warmup=2)


def rows_for(precision, args, x, y, images):
    """{row: (kzoo seconds, keras.applications seconds or None)} in `precision`."""
    out = {}
    if "infer" in args.rows:
        ours = kzoo.resnet50(dtype=precision)
        with dtype_policy(precision):
            theirs = keras.applications.ResNet50(weights=None)
        out["infer"] = (infer_seconds(ours, x, args.steps), infer_seconds(theirs, x, args.steps))
    if "predict" in args.rows:
        trained = kzoo.load("resnet50", dtype=precision)
        out["predict"] = (best(lambda: trained.predict(images, batch_size=args.batch), args.steps, warmup=1), None)
    if "train" in args.rows:
        ours = kzoo.resnet50(dtype=precision, classifier_activation=None)
        with dtype_policy(precision):
            theirs = keras.applications.ResNet50(weights=None, classifier_activation=None)
        out["train"] = (train_seconds(ours, (x, y), args.steps, precision),
                        train_seconds(theirs, (x, y), args.steps, precision, keras_fit=True))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", default="infer,predict,train")
    parser.add_argument("--precisions", default=",".join(MEASURED))
    args = parser.parse_args()
    args.rows = args.rows.split(",")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch, 224, 224, 3)), tf.float32)
    y = tf.constant(rng.integers(0, 1000, args.batch), tf.int32)
    images = rng.integers(0, 256, (args.batch, 256, 256, 3), dtype=np.uint8)
    macs = count_macs(kzoo.resnet50())
    precisions = args.precisions.split(",")
    peaks = {p: matmul_peak(compute_dtype(p)) for p in precisions}
    print(f"ResNet-50, batch {args.batch}; {cpu_line()}; TensorFlow {tf.__version__}, Keras {keras.__version__}; "
          f"matmul peak " + ", ".join(f"{compute_dtype(p)} {2 * peaks[p] / 1e9:.0f} GFLOP/s" for p in precisions)
          + ("" if has_amx() else " (no AMX: bfloat16 is emulated or AVX-512-BF16 only)") + "\n")
    print("| row | precision | img/s | of that dtype's peak | keras.applications img/s | kzoo / Keras |\n"
          "|---|---|---|---|---|---|")
    measured = {}
    for precision in precisions:
        for row, (ours, theirs) in rows_for(precision, args, x, y, images).items():
            passes = 3 if row == "train" else 1
            rate = args.batch / ours
            measured[row, precision] = rate
            fraction = macs * passes * rate / peaks[precision]
            keras_cells = (f"{args.batch / theirs:.1f} | {theirs / ours:.2f}x" if theirs else "- | -")
            print(f"| {row} | {precision} | {rate:.1f} | {fraction:.2f} | {keras_cells} |", flush=True)
    if len(precisions) == 2:
        print("\n" + "\n".join(f"{row}: {precisions[1]} / {precisions[0]} = "
                                f"{measured[row, precisions[1]] / measured[row, precisions[0]]:.2f}x"
                                for row in args.rows))


if __name__ == "__main__":
    main()
