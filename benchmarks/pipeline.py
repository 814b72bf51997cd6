"""Input-pipeline throughput per CPU core: the recipes' training and evaluation pipelines
(kzoo.train.engine's datasets), on a raw folder of JPEGs and on prepared shards.

    python benchmarks/pipeline.py [--images 200] [--threads 1] [--repeats 3] [--recipes alexnet,resnet]

Generates `--images` 500x375 JPEGs (ImageNet's typical size) of smooth noise (so their
sizes are realistic, ~60 kB) in a temporary folder, prepares shards from them
(python -m kzoo.data.prepare) for each recipe, then times one pass over every image
with tf.data limited to `--threads` threads; prints images/s divided by the threads,
as a Markdown table for docs/performance.md. Run by hand, never in the tests.
"""

import argparse
import os
import platform
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kzoo  # noqa: E402,F401  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from kzoo import data  # noqa: E402  (data.prepare on first use: the code before issue 14 has none)
from kzoo.data import sources  # noqa: E402
from kzoo.recipes import alexnet, resnet  # noqa: E402
from kzoo.train import engine  # noqa: E402

RECIPES = {"alexnet": alexnet.RECIPE, "resnet": resnet.RECIPE}


def write_jpegs(root, count, classes=4, size=(500, 375), seed=0):
    """`count` smooth-noise JPEGs (quality 90) in `classes` class folders under root/train and,
    the same files, root/val."""
    rng = np.random.default_rng(seed)
    width, height = size
    for i in range(count):
        coarse = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(image, np.int16) + rng.integers(-8, 9, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        for split in ("train", "val"):
            folder = os.path.join(root, split, f"class{i % classes}")
            os.makedirs(folder, exist_ok=True)
            image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def _stats(p):
    size = p.center if p.pixel_mean else 1
    mean = np.full((size, size, 3), 120.0, np.float32) if p.pixel_mean else np.array([120.0, 115, 100], np.float32)
    return {"mean": mean, "eigvals": np.array([0.2, 0.02, 0.002], np.float32), "eigvecs": np.eye(3, dtype=np.float32)}


def _limited(ds, threads):
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def pipelines(source, p, batch=32):
    """{"train": dataset, "eval": dataset}: exactly what the engine feeds the model."""
    config = types.SimpleNamespace(preprocess=p, seed=0, steps_per_epoch=None, val_steps=None)
    stats = _stats(p)
    return {"train": engine._train_dataset(source, config, stats, 0, 0, batch),
            "eval": engine._val_dataset(source, config, stats, batch)}


def images_per_second_per_core(ds, count, threads, repeats):
    """(images per wall second / threads, images per CPU second of this process): the best of
    `repeats` passes. On a shared machine the CPU-time rate is the steadier one."""
    ds = _limited(ds, threads)
    wall, cpu = [], []
    for _ in range(repeats + 1):  # the first pass warms up (graph tracing, file cache)
        start, start_cpu = time.perf_counter(), time.process_time()
        seen = sum(int(images.shape[0]) for images, _ in ds)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert seen >= count - 32, (seen, count)
    return seen / min(wall[1:]) / threads, seen / min(cpu[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--recipes", default="alexnet,resnet")
    parser.add_argument("--modes", default="folder,png,raw", help="folder: the JPEGs; png, raw, jpeg: shards "
                        "of that --encoding (ResNet's: the files' own bytes, whatever the mode)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw")
        write_jpegs(raw, args.images)
        for name in args.recipes.split(","):
            p = RECIPES[name].preprocess
            modes = args.modes.split(",")
            if isinstance(p.resize, tuple):  # shards at the images' own size: one kind
                modes = [m for m in modes if m == "folder"] + (["original"] if set(modes) - {"folder"} else [])
            for mode in modes:
                if mode == "folder":
                    source = sources.image_folder(raw)
                else:
                    out = os.path.join(tmp, f"shards-{name}-{mode}")
                    source = sources.load_source(None, prepared(raw, out, p, mode))
                for split, ds in pipelines(source, p).items():
                    rate, cpu_rate = images_per_second_per_core(ds, args.images, args.threads, args.repeats)
                    rows.append((name, split, mode, rate, cpu_rate))
                    print(f"{name:8s} {split:5s} {mode:8s} {rate:8.1f} images/s per thread, {cpu_rate:8.1f} per "
                          f"CPU second", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, "
          f"{args.images} 500x375 JPEGs, {args.threads} thread(s)\n")
    print("| recipe | pipeline | data | images/s per thread (wall) | images per CPU second |\n|---|---|---|---|---|")
    for name, split, mode, rate, cpu_rate in rows:
        print(f"| {name} | {split} | {mode} | {rate:.0f} | {cpu_rate:.0f} |")


def prepared(raw, out, p, encoding):
    """Shards of `raw` for preprocessing `p` (its fixed resize; none for a random range)."""

    fixed = not isinstance(p.resize, tuple)
    flags = ["--short-side", str(p.resize) if fixed else "0"] + (["--center", str(p.center)] if fixed and p.center
                                                                   else [])
    if not os.path.exists(os.path.join(out, "manifest.json")):
        start = time.perf_counter()
        data.prepare.main(["--data-dir", raw, "--out", out, *flags, "--encoding", encoding, "--quiet"])
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print(f"prepared {out}: {time.perf_counter() - start:.1f} s, {size / 1e6:.1f} MB", flush=True)
    return out


if __name__ == "__main__":
    main()
