"""kzoo models on a GPU host without TensorFlow: Keras 3 with the JAX backend.

    KERAS_BACKEND=jax python benchmarks/gpu_jax_throughput.py [--steps 20] [--out results.json]

For each model: inference and training (model.fit, SGD momentum 0.9) images/s
on random data, float32 and mixed_bfloat16. Results print as a Markdown table
for docs/performance.md.
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kzoo  # noqa: E402

CASES = [("resnet50", 224, 256), ("resnet152", 224, 128), ("alexnet", 224, 256), ("zfnet", 224, 256),
         ("overfeat_fast", 231, 256), ("resnet110", 32, 512)]


def measure(name, size, batch, steps, policy):
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)
    model = kzoo.create_model(name, input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, model.output.shape[-1], batch)
    model.predict(x, batch_size=batch, verbose=0)
    start = time.perf_counter()
    for _ in range(steps):
        out = model.predict_on_batch(x)
    np.asarray(out)
    infer_ips = batch * steps / (time.perf_counter() - start)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    xs, ys = np.concatenate([x] * steps), np.concatenate([y] * steps)
    model.fit(x, y, batch_size=batch, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, verbose=0)
    train_ips = batch * steps / (time.perf_counter() - start)
    return infer_ips, train_ips


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    import jax

    device = jax.devices()[0]
    print(f"device: {device.device_kind}, backend {keras.backend.backend()}, jax {jax.__version__}, "
          f"keras {keras.__version__}")
    print("| model | input | batch | precision | inference images/s | training images/s |\n|---|---|---|---|---|---|")
    rows = []
    for name, size, batch in CASES:
        for policy in ("float32", "mixed_bfloat16"):
            infer, train = measure(name, size, batch, args.steps, policy)
            rows.append(dict(model=name, input=size, batch=batch, precision=policy, inference=infer, training=train))
            print(f"| {name} | {size} | {batch} | {policy} | {infer:.0f} | {train:.0f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device.device_kind, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
