"""What runs before the first training step, at growing sizes of a generated 1,000-class
image folder, fitted and extrapolated to ImageNet's 1,281,167 training images.

    python benchmarks/imagenet_scale.py [--sizes 10000,50000,200000] [--root /tmp/kzoo-scale]
                                        [--side 128] [--steps listing,stats,prepare]

For each size N: listing (kzoo.data.images.folder_splits: the class folders, each file's
signature and the data's fingerprint), the mean image and PCA of AlexNet §2 over the
training images (kzoo.data.stats.compute_stats with AlexNet's pipeline: shorter side 256,
centre 256x256), and `prepare` (kzoo.data.shards.prepare into raw 256 px shards); the first
train step of AlexNet and ResNet-50 (tracing, the same at any N); then a
least-squares fit t = a + b N per step, and its value at 1,281,167 images. The folders
hold N JPEGs of `--side`x3/4`--side` px (ImageNet's average is ~400x350, ~110 kB: the
decode share of stats and prepare grows with it; the per-image decode of an ImageNet-sized
JPEG is measured too, to say by how much). Generated folders are kept under --root and
reused. Prints Markdown for docs/performance.md.
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402,F401  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.data import images as image_files  # noqa: E402
from kzoo.data import shards, stats  # noqa: E402
from kzoo.data.sources import load_source  # noqa: E402
from kzoo.registry import PIPELINES  # noqa: E402

IMAGENET_TRAIN = 1_281_167
CLASSES = 1000


def generate(root, count, side, seed=0):
    """`root` with `count` JPEGs spread over 1,000 class folders (kept: made once per size)."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side * 3 // 4 // 8, side // 8, 3), dtype=np.uint8)
    for c in range(CLASSES):
        os.makedirs(os.path.join(root, f"n{c:08d}"), exist_ok=True)
    for i in range(count):
        tint = rng.integers(-40, 40, 3)
        im = Image.fromarray(np.clip(base.astype(int) + tint, 0, 255).astype(np.uint8)).resize((side, side * 3 // 4))
        im.save(os.path.join(root, f"n{i % CLASSES:08d}", f"{i:07d}.JPEG"), quality=90)
    open(done, "w").close()
    return root


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_steps(root, steps, scratch):
    """{step: seconds} for the folder `root`."""
    out = {}
    if "listing" in steps:
        out["listing"] = timed(lambda: image_files.folder_splits(root))
    if "stats" in steps:
        source = load_source(None, root)
        out["stats"] = timed(lambda: stats.compute_stats(source.train, PIPELINES["alexnet"], progress=False))
    if "prepare" in steps:
        target = os.path.join(scratch, "shards")
        shutil.rmtree(target, ignore_errors=True)
        out["prepare"] = timed(lambda: shards.prepare(root, target, short_side=256, center=256, verbose=0))
        shutil.rmtree(target, ignore_errors=True)
    return out


def imagenet_sized_decode(repeats=50):
    """Seconds to decode one ~500x375 JPEG and resize it to a shorter side of 256 (tf.image)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        im.save(f.name, quality=90)
        data = tf.constant(open(f.name, "rb").read())
    fn = tf.function(lambda d: tf.image.resize(tf.io.decode_jpeg(d), (256, 341), antialias=True))
    fn(data)
    return timed(lambda: [fn(data) for _ in range(repeats)]) / repeats


def tracing_seconds(name, batch=32):
    """(first train step, a later one) in seconds for `name` at 224 px: the first traces the
    engine's step and lets TensorFlow optimize its graph, whatever the data's size."""
    import keras

    from kzoo.train.engine import make_steps

    model = kzoo.create_model(name, input_shape=(224, 224, 3), classifier_activation=None)
    step, _ = make_steps(model, keras.optimizers.SGD(0.01, momentum=0.9), tf.distribute.get_strategy(),
                         global_batch=batch, classes=1000, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    data = (tf.constant(rng.normal(size=(batch, 224, 224, 3)), tf.float32),
            tf.constant(rng.integers(0, 1000, batch), tf.int32))
    first = timed(lambda: float(step(data)[0]))
    return first, timed(lambda: float(step(data)[0]))


def fit(sizes, seconds):
    """(a, b) of the least-squares line t = a + b N."""
    b, a = np.polyfit(np.asarray(sizes, float), np.asarray(seconds, float), 1)
    return a, b


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "kzoo-scale"))
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--steps", default="listing,stats,prepare")
    parser.add_argument("--trace", default="alexnet,resnet50", help="models whose first train step is timed")
    args = parser.parse_args()
    sizes, steps = [int(s) for s in args.sizes.split(",")], args.steps.split(",")
    rows = {}
    for n in sizes:
        root = os.path.join(args.root, f"{n}-{args.side}")
        start = time.perf_counter()
        generate(root, n, args.side)
        print(f"{n} images ready in {time.perf_counter() - start:.0f} s", flush=True)
        rows[n] = run_steps(root, steps, args.root)
        print(f"  {n}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[n].items()), flush=True)
    print(f"\n{os.cpu_count()} cores; per-image decode + resize of a 500x375 JPEG: "
          f"{1e3 * imagenet_sized_decode():.2f} ms")
    for name in args.trace.split(",") if args.trace else []:
        first, later = tracing_seconds(name)
        print(f"{name}: first train step (batch 32) {first:.1f} s, a later one {later:.1f} s: tracing "
              f"~{first - later:.1f} s, whatever N")
    print()
    print("| step | " + " | ".join(f"{n:,} images" for n in sizes) + " | fit a + b N | 1,281,167 images |\n"
          "|---|" + "---|" * (len(sizes) + 2))
    for step in steps:
        seconds = [rows[n][step] for n in sizes]
        a, b = fit(sizes, seconds) if len(sizes) > 1 else (0.0, seconds[0] / sizes[0])
        print(f"| {step} | " + " | ".join(f"{s:.1f} s" for s in seconds)
              + f" | {a:.1f} s + {1e6 * b:.0f} us x N | {(a + b * IMAGENET_TRAIN) / 60:.1f} min |")


if __name__ == "__main__":
    main()
