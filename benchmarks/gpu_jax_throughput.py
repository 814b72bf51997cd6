"""kzoo models on a GPU host without TensorFlow: Keras 3 with the JAX backend, data resident
on the device, float32 and mixed_bfloat16, against the published anchors for that GPU.

    KERAS_BACKEND=jax python benchmarks/gpu_jax_throughput.py [--batch 256] [--steps 20]
                                                              [--models resnet50,alexnet] [--out results.json]

For each model and precision (the builders' dtype=): inference (the model's stateless call,
training=False, under jax.jit) and training (forward, backward and SGD with momentum 0.9 in
one jax.jit step whose state stays on the device: Keras' stateless_call and the optimizer's
stateless_apply) in images/s, on one random batch put on the device once; the clock stops
on block_until_ready. ResNet-50 training anchors per H100: MLPerf Training ~7,000 img/s
(NVIDIA's DALI + MXNet, mixed precision), Lambda's PyTorch bfloat16 ~2,600-2,800. Prints
Markdown for docs/performance.md; --small runs it in seconds on a CPU (a check of the script).
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kzoo  # noqa: E402

ANCHORS = {("resnet50", "train"): "MLPerf ~7,000; Lambda PyTorch bf16 ~2,600-2,800"}


def _timed(fn, steps):
    import jax

    jax.block_until_ready(fn())  # compiled and warm
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return steps / (time.perf_counter() - start)


def inference_rate(model, x, steps):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    return len(x) * _timed(lambda: forward(trainable, frozen, x), steps)


def training_rate(model, x, y, steps):
    import jax

    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_and_state(trainable, frozen, x, y):
        logits, frozen = model.stateless_call(trainable, frozen, x, training=True)
        return loss_fn(y, keras.ops.cast(logits, "float32")), frozen

    grad_fn = jax.value_and_grad(loss_and_state, has_aux=True)

    @jax.jit
    def step(state):
        trainable, frozen, slots = state
        (loss, frozen), grads = grad_fn(trainable, frozen, x, y)
        trainable, slots = optimizer.stateless_apply(slots, grads, trainable)
        return trainable, frozen, slots

    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])

    def run():
        nonlocal state
        state = step(state)
        return state[0][0]

    return len(x) * _timed(run, steps)


def measure(name, size, batch, steps, precision, classes):
    import jax

    keras.backend.clear_session()
    model = kzoo.create_model(name, input_shape=(size, size, 3), classes=classes, classifier_activation=None,
                              dtype=precision)
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(batch, size, size, 3)).astype("float32"))
    y = jax.device_put(rng.integers(0, classes, batch).astype("int32"))
    return inference_rate(model, x, steps), training_rate(model, x, y, steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default="resnet50,alexnet")
    parser.add_argument("--small", action="store_true", help="96 px inputs, batch 4, 2 steps: a check on a CPU")
    parser.add_argument("--out")
    args = parser.parse_args()
    import jax

    device = jax.devices()[0]
    size, batch, steps = (96, 4, 2) if args.small else (224, args.batch, args.steps)
    print(f"device: {device.device_kind} ({device.platform}), backend {keras.backend.backend()}, jax {jax.__version__}, "
          f"keras {keras.__version__}; batch {batch}, {size} px, data on the device")
    print("| model | precision | inference img/s | training img/s | anchor (training, img/s) |\n|---|---|---|---|---|")
    rows = []
    for name in args.models.split(","):
        for precision in ("float32", "mixed_bfloat16"):
            infer, train = measure(name, size, batch, steps, precision, classes=1000)
            rows.append(dict(model=name, batch=batch, precision=precision, inference=infer, training=train))
            print(f"| {name} | {precision} | {infer:.0f} | {train:.0f} | {ANCHORS.get((name, 'train'), '-')} |",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device.device_kind, "batch": batch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
