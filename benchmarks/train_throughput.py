"""Training throughput on this machine: kzoo's engine step vs keras.applications under fit.

    python benchmarks/train_throughput.py [--batch 32] [--steps 5] [--out results.json]

Measures, in one process and on the same random data:
  - kzoo resnet50 and alexnet train steps (kzoo.train.engine.make_steps), XLA off and on;
  - keras.applications.ResNet50 under model.fit (SGD, same batch);
  - the AlexNet input pipeline alone (decode + resize + crop + flip + PCA noise).
Results (images/s) print as a Markdown table for docs/performance.md.
"""

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.data.sources import image_folder  # noqa: E402
from kzoo.data.transforms import train_map  # noqa: E402
from kzoo.recipes import alexnet as alexnet_recipe  # noqa: E402
from kzoo.train.engine import make_steps  # noqa: E402


def _timed(step, batch, warmup, steps):
    for _ in range(warmup):
        out = step(batch)
    float(out[0])
    start = time.perf_counter()
    for _ in range(steps):
        out = step(batch)
    float(out[0])
    return time.perf_counter() - start


def kzoo_step(name, size, batch, warmup, steps, xla):
    keras.backend.clear_session()
    model = kzoo.create_model(name, input_shape=(size, size, 3), classifier_activation=None)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    strategy = tf.distribute.get_strategy()
    train_step, _ = make_steps(model, optimizer, strategy, global_batch=batch, classes=1000,
                               weight_decay=5e-4, xla=xla)
    rng = np.random.default_rng(0)
    data = (tf.constant(rng.normal(size=(batch, size, size, 3)), tf.float32),
            tf.constant(rng.integers(0, 1000, batch), tf.int32))
    return batch * steps / _timed(train_step, data, warmup, steps)


def keras_fit(batch, warmup, steps):
    keras.backend.clear_session()
    model = keras.applications.ResNet50(weights=None)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * (warmup + steps), 224, 224, 3)).astype("float32")
    y = rng.integers(0, 1000, len(x))
    model.fit(x[: batch * warmup], y[: batch * warmup], batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.fit(x[batch * warmup :], y[batch * warmup :], batch_size=batch, verbose=0)
    return batch * steps / (time.perf_counter() - start)


def pipeline(images=256):
    p = alexnet_recipe.RECIPE.preprocess
    stats = {"mean": np.zeros((p.center, p.center, 3), np.float32), "eigvals": np.ones(3, np.float32) * 0.1,
             "eigvecs": np.eye(3, dtype=np.float32)}
    with tempfile.TemporaryDirectory() as root:
        rng = np.random.default_rng(0)
        for c in range(4):
            os.makedirs(f"{root}/c{c}")
            for i in range(images // 4):
                jpeg = tf.io.encode_jpeg(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8))
                tf.io.write_file(f"{root}/c{c}/{i}.jpg", jpeg)
        source = image_folder(root, val_fraction=0.01)
        fn = train_map(p, stats)
        seeds = tf.data.Dataset.range(source.train_size).map(lambda i: tf.stack([tf.constant(0, tf.int64), i]))
        ds = tf.data.Dataset.zip((source.train, seeds)).map(
            lambda pair, seed: fn(pair[0], pair[1], seed), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(32).prefetch(tf.data.AUTOTUNE)
        for _ in ds.take(1):
            pass
        start = time.perf_counter()
        count = sum(int(b[0].shape[0]) for b in ds)
        return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON")
    args = parser.parse_args()
    rows = []
    for name, size in (("resnet50", 224), ("alexnet", 224)):
        for xla in (False, True):
            rows.append((f"kzoo {name} train step", "on" if xla else "off",
                         kzoo_step(name, size, args.batch, args.warmup, args.steps, xla)))
    rows.append(("keras.applications.ResNet50, model.fit", "default", keras_fit(args.batch, args.warmup, args.steps)))
    rows.append(("AlexNet input pipeline (375x500 JPEG -> 224 crop)", "n/a", pipeline()))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TF {tf.__version__}, Keras {keras.__version__}, batch {args.batch}")
    print("| what | XLA | images/s |\n|---|---|---|")
    for what, xla, ips in rows:
        print(f"| {what} | {xla} | {ips:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump([{"what": w, "xla": x, "images_per_s": v} for w, x, v in rows], f, indent=1)


if __name__ == "__main__":
    main()
