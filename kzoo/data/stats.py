"""Dataset statistics: the mean image and the RGB PCA of AlexNet §2 and §4.1.

Computed once, streaming over the training images (never all in memory), and
cached as an .npz file written atomically; a later run with the same source and
sizes loads it instead.
"""

import contextlib
import hashlib
import json
import os
import sys
import zipfile

import numpy as np
import tensorflow as tf

from kzoo.data.images import PROGRESS_FROM
from kzoo.data.transforms import base_image
from kzoo.utils.files import atomic_write, cache_dir as kzoo_cache_dir
from kzoo.utils.progress import progress_bar


def _sums(images, pixel_mean):
    """One batch's (image sum, RGB sum, RGB outer-product sum, images, pixels), in float64:
    computed in tf.data's parallel map, so every core shares the pass."""
    images = tf.cast(images, tf.float64)
    rgb = tf.reshape(images, (-1, 3)) / 255.0
    image_sum = tf.reduce_sum(images, 0) if pixel_mean else tf.zeros((), tf.float64)
    return (image_sum, tf.reduce_sum(rgb, 0), tf.matmul(rgb, rgb, transpose_a=True),
            tf.cast(tf.shape(images)[0], tf.int64), tf.cast(tf.shape(rgb)[0], tf.int64))


def compute_stats(dataset, preprocess, batch=256, limit=None, progress=True):
    """{"mean", "eigvals", "eigvecs", "count"} over `dataset` of (image, label) pairs.

    mean: the mean of the resized (and centre-squared) images, in [0, 255],
    as an image when they share a size, else a colour. eigvals/eigvecs: the
    3x3 covariance of RGB values in [0, 1] (AlexNet's PCA colour noise).
    `progress`: a bar when the pass covers PROGRESS_FROM images or more.
    """
    ds = dataset.map(lambda image, label: base_image(image, preprocess), num_parallel_calls=tf.data.AUTOTUNE)
    if limit:
        ds = ds.take(limit)
    total = int(ds.cardinality())
    total = total if total >= 0 else None  # unknown (-2) or infinite (-1): a bar without an end
    pixel_mean = preprocess.pixel_mean
    if preprocess.center:  # centre squares share one size: batches of up to `batch`, ~1M pixels at most
        side = preprocess.center
        ds = ds.map(lambda image: tf.ensure_shape(image, (side, side, 3)))
        ds = ds.batch(max(1, min(batch, 2**20 // side**2)))
    else:
        ds = ds.map(lambda image: image[None])
    ds = ds.map(lambda images: _sums(images, pixel_mean), num_parallel_calls=tf.data.AUTOTUNE)
    bar = progress_bar(total, verbose=progress and (total or 0) >= PROGRESS_FROM, unit_name="image")
    image_sum, rgb_sum, outer_sum, count, pixels = 0.0, np.zeros(3), np.zeros((3, 3)), 0, 0
    for sums in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        image_sum, rgb_sum, outer_sum = image_sum + sums[0], rgb_sum + sums[1], outer_sum + sums[2]
        count, pixels = count + int(sums[3]), pixels + int(sums[4])
        bar.update(count)
    if count == 0:
        raise ValueError("cannot compute dataset statistics: the training set is empty.")
    rgb_mean = rgb_sum / pixels
    cov = outer_sum / pixels - np.outer(rgb_mean, rgb_mean)
    eigvals, eigvecs = np.linalg.eigh(cov)
    mean = image_sum / count if pixel_mean else rgb_mean * 255.0
    return {
        "mean": np.asarray(mean, "float32"),
        "eigvals": eigvals[::-1].astype("float32"),
        "eigvecs": eigvecs[:, ::-1].astype("float32"),
        "count": np.int64(count),
    }


def stats_name(preprocess, key, limit=None):
    """The statistics file's name: a hash of `key` (the data) and the sizes that shape them."""
    tag = json.dumps([key, preprocess.resize, preprocess.center, preprocess.pixel_mean, limit])
    return f"stats-{hashlib.sha256(tag.encode()).hexdigest()[:16]}.npz"


def cached_stats(dataset, preprocess, cache_dir, key, limit=None, fingerprint=None, write=True):
    """`compute_stats`, cached in `cache_dir` under `stats_name`. With the data's `fingerprint`
    (a digest of its content) they are also shared through kzoo's cache folder: every run on
    the built-in data reuses one computation, and a run's own copy stays in `cache_dir`.
    `write=False` reads the caches but writes neither (a worker that is not the chief)."""
    path = os.path.join(cache_dir, stats_name(preprocess, key, limit))
    if os.path.exists(path):
        try:
            return read_stats(path)
        except ValueError as err:  # computed again below, from the same data
            print(f"warning: {err.args[0].split(';')[0]}; computing it again.", file=sys.stderr)
    shared = fingerprint and kzoo_cache_dir("stats", stats_name(preprocess, ["data", fingerprint], limit))
    stats = None
    if shared and os.path.exists(shared):
        with contextlib.suppress(ValueError):  # damaged: computed again
            stats = read_stats(shared)
    if stats is None:
        stats = compute_stats(dataset, preprocess, limit=limit)
        if shared and write:
            with contextlib.suppress(OSError):  # a cache that cannot be written costs time, not the run
                _write(shared, stats)
    if write:
        _write(path, stats)
    return stats


KEYS = ("mean", "eigvals", "eigvecs", "count")


def read_stats(path):
    """The statistics saved in `path`; a file cut short or not kzoo's is a ValueError naming it."""
    try:
        with np.load(path) as data:
            stats = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"the statistics file {path} is damaged ({str(err) or type(err).__name__}); delete it and "
                         f"rerun the training command, which computes it again from the same data") from None
    if set(KEYS) - set(stats) or np.shape(stats["eigvecs"]) != (3, 3) or not np.isfinite(stats["mean"]).all():
        raise ValueError(f"the statistics file {path} is damaged (it holds {sorted(stats)}, not a finite mean and a "
                         f"3x3 colour PCA); delete it and rerun the training command, which computes it again from "
                         f"the same data")
    return stats


def _write(path, stats):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, **stats)
