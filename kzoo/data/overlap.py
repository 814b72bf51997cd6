"""`python -m kzoo.data.overlap`: near-duplicate images between two collections (ZFNet §5.2).

    python -m kzoo.data.overlap --data-dir 256_ObjectCategories --against ILSVRC2012/train \\
        --out overlap-caltech256.csv --cache thumbs/

ZFNet (§5.2) used normalized correlation to find the Caltech images that are also in
ImageNet, so that no test image had been seen in training. This lists such pairs:
every image (of both folders, searched recursively) becomes a 32x32 grey thumbnail
(an area average of the whole image, the aspect ratio ignored), made zero-mean and
unit-norm, so that the normalized correlation of two images is a dot product; blocks
of --data-dir's thumbnails meet blocks of --against's in one matrix product each, also
as mirror images (a flipped copy counts). Every pair correlating at least --threshold
is written to --out (CSV: image, against, correlation, flipped; paths relative to each
folder), which the Caltech recipes take as --exclude. --cache keeps each folder's
thumbnails (with the files' sizes and times: only new or changed files are computed
again), so ImageNet's 1.28 million are computed once. docs/transfer.md has the
threshold's evidence and the cost.
"""

import argparse
import concurrent.futures
import csv
import dataclasses
import functools
import hashlib
import math
import numbers
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits  # scikit-learn's dependency

import kzoo
from kzoo.data import images
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_flags, flags_from, folder, option,
                            positive_int, run_command)
from kzoo.utils.files import atomic_write

SIZE = 32  # thumbnail side: distinct photographs correlate less than at 16x16 (docs/transfer.md)
THRESHOLD = 0.95  # measured on planted copies vs distinct photographs: docs/transfer.md
BLOCK = 4096  # thumbnails per block: two 4096x4096 float32 products (one in place), 128 MB
FLAT = 1.0  # a thumbnail whose grey levels vary less (std, of 255) has no pattern to correlate
MAX_PAIRS = 1_000_000  # more than this at a threshold means the threshold is too low
GREY = np.float32([0.299, 0.587, 0.114])  # ITU-R 601 luma, as tf.image.rgb_to_grayscale
HEADER = ("image", "against", "correlation", "flipped")
CACHE_VERSION = 1  # bump when a thumbnail is computed differently
CHECKPOINT_S = 600  # a long thumbnail pass saves its cache this often (a rerun resumes)


@dataclasses.dataclass(frozen=True)
class Pair:
    image: str  # relative to --data-dir
    against: str  # relative to --against
    correlation: float
    flipped: bool  # the best match is the mirror image


def list_images(root, flag="--data-dir"):
    """Image files under `root`, recursively (hidden files and folders skipped), as sorted
    paths relative to `root` with "/" separators."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{flag} {root!r} is not a folder; give a folder of images (sub-folders are searched).")
    files = sorted(os.path.relpath(path, root).replace(os.sep, "/") for path in images.found(root))
    if not files:
        raise ValueError(f"{flag} {root!r} holds no images ({', '.join(images.SUFFIXES)}, in it or its sub-folders).")
    return files


@functools.lru_cache(maxsize=256)
def _area(n, m):
    """(m, n) matrix averaging n pixels into m: each output covers n/m inputs, partial ones weighted."""
    edges = np.linspace(0, n, m + 1)
    i = np.arange(n)
    overlap = np.clip(np.minimum(i + 1, edges[1:, None]) - np.maximum(i, edges[:-1, None]), 0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def grey_thumbnail(image, size=SIZE):
    """(H, W, 3) uint8 RGB -> (size, size) float32 grey levels: the area average of the whole
    image (antialiased; any aspect ratio squeezed to a square, so a rescaled copy matches)."""
    grey = np.asarray(image).astype(np.float32) @ GREY
    return _area(grey.shape[0], size) @ grey @ _area(grey.shape[1], size).T


def encode(thumb):
    """A thumbnail -> its zero-mean, unit-norm values in the mirror basis, float16.

    The left half L and the mirrored right half R become (L + R)/√2 and (L - R)/√2: an
    orthogonal change of basis, so dot products are kept, and mirroring an image only
    negates the second half. Then x·y = S + Q and x·mirror(y) = S - Q (S, Q: the
    halves' products), and the better of the two is S + |Q|: the flipped comparison
    costs no second product. A flat thumbnail (std < FLAT) is all zeros: it matches nothing."""
    thumb = np.asarray(thumb, np.float32)
    size = thumb.shape[1]
    centred = thumb - thumb.mean()
    if centred.std() < FLAT:
        return np.zeros(thumb.size, np.float16)
    centred /= np.linalg.norm(centred)
    left, right = centred[:, : size // 2], centred[:, ::-1][:, : size // 2]
    return (np.concatenate([(left + right).ravel(), (left - right).ravel()]) / math.sqrt(2)).astype(np.float16)


def _check_size(size):
    if not (isinstance(size, int) and size >= 2 and size % 2 == 0):
        raise ValueError(f"size: expected an even integer >= 2 (the mirror basis splits the thumbnail in halves), "
                         f"got {size!r}.")


def check_threshold(value, flag="--threshold"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
        raise ValueError(f"argument {flag}: expected a number in (0, 1], got {value!r}")
    return float(value)


def _threshold_arg(text):
    try:
        return check_threshold(float(text))
    except ValueError:  # nan and words too
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None


def _progress(total, unit, enabled):
    """kzoo's progress bar (keras' Progbar, as the evaluation's), with a rate: None when off."""
    if not enabled:
        return None
    bar = kzoo.utils.progress.progress_bar(total, unit_name=unit, stateful_metrics=[f"{unit}s/s"])  # Keras: on use
    bar.start, bar.done = time.perf_counter(), 0
    return bar


def _advance(bar, n):
    if bar is not None:
        bar.done += n
        per_second = kzoo.utils.progress.rate(bar.done, time.perf_counter() - bar.start)
        bar.update(bar.done, [(f"{bar.unit_name}s/s", per_second)])


def _count(n):
    for low, scale, prefix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if n >= low:
            return f"{n / scale:.3g} {prefix}" if n < 1000 * scale else f"{n / scale:,.0f} {prefix}"
    return f"{n:,.0f}"


def _stats(root, files):
    stats = [os.stat(os.path.join(root, f)) for f in files]
    return np.array([s.st_size for s in stats], np.int64), np.array([s.st_mtime_ns for s in stats], np.int64)


def cache_path(cache_dir, root, size=SIZE):
    digest = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"thumbnails-{os.path.basename(os.path.abspath(root))}-{digest}-{size}.npz")


def _load_cache(path, root, size):
    """{relative path: (file size, mtime_ns, row)} and the rows, or ({}, None)."""
    if not path or not os.path.exists(path):
        return {}, None
    with np.load(path) as cached:
        same = (int(cached["version"]) == CACHE_VERSION and int(cached["size"]) == size
                and str(cached["root"]) == os.path.abspath(root))
        if not same:
            return {}, None
        files, sizes, mtimes, thumbs = (cached[k] for k in ("files", "sizes", "mtimes", "thumbs"))
    rows = zip(files.tolist(), sizes.tolist(), mtimes.tolist())
    return {f: (s, m, row) for row, (f, s, m) in enumerate(rows)}, thumbs


def _save_cache(path, root, size, files, sizes, mtimes, thumbs):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, version=CACHE_VERSION, size=size, root=os.path.abspath(root), files=np.array(files, str),
                 sizes=sizes, mtimes=mtimes, thumbs=thumbs)


def _decoded(root, files, workers):
    """(index, uint8 image) for each file, read in parallel by kzoo.data.images (Pillow
    decodes without the GIL); a file that fails is named."""
    paths = [os.path.join(root, f) for f in files]
    chunk = 4 * workers  # a few images ahead of the consumer, not the whole folder in memory
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(paths), chunk):
            yield from enumerate(pool.map(images.read, paths[start:start + chunk]), start)


def thumbnails(root, files=None, size=SIZE, cache_dir=None, workers=None, progress=True, flag="--data-dir"):
    """(N, size*size) float16 encoded thumbnails (see `encode`) of `files` (relative to
    `root`; default: all its images) and the files. With `cache_dir`, unchanged files
    (same size and mtime) are read from the cache and the cache is updated atomically,
    also every CHECKPOINT_S seconds and when a file fails, so that a rerun resumes."""
    _check_size(size)
    files = list_images(root, flag) if files is None else list(files)
    sizes, mtimes = _stats(root, files)
    path = cache_path(cache_dir, root, size) if cache_dir else None
    known, cached = _load_cache(path, root, size)
    rows = [known.get(f) for f in files]
    done = np.array([r is not None and r[:2] == (sizes[k], mtimes[k]) for k, r in enumerate(rows)], bool)
    if cached is not None and done.all() and [r[2] for r in rows] == list(range(len(cached))):
        return cached, files  # the cache is exactly this folder
    out = np.zeros((len(files), size * size), np.float16)
    if done.any():
        out[done] = cached[[rows[k][2] for k in np.flatnonzero(done)]]
    del cached
    fresh = np.flatnonzero(~done).tolist()

    def save():
        if path and done.all():  # no copy: ImageNet's thumbnails are 2.6 GB
            _save_cache(path, root, size, files, sizes, mtimes, out)
        elif path:
            keep = np.flatnonzero(done)
            _save_cache(path, root, size, [files[k] for k in keep], sizes[keep], mtimes[keep], out[keep])

    if progress and fresh:
        print(f"Thumbnails of {root}:")
    bar = _progress(len(fresh), "image", progress and bool(fresh))
    saved = time.monotonic()
    try:
        with threadpool_limits(1, user_api="blas"):  # tiny products: BLAS threads only contend with the decoders
            for k, image in _decoded(root, [files[k] for k in fresh], workers or os.cpu_count() or 1):
                out[fresh[k]] = encode(grey_thumbnail(image, size))
                done[fresh[k]] = True
                _advance(bar, 1)
                if path and time.monotonic() - saved > CHECKPOINT_S:
                    save()
                    saved = time.monotonic()
    except (ValueError, FileNotFoundError, KeyboardInterrupt):
        save()  # the thumbnails computed so far are kept
        raise
    save()
    return out, files


def correlate(a, b, threshold=THRESHOLD, block=BLOCK, progress=False):
    """[(i, j, correlation, flipped)] for every a[i], b[j] (encoded thumbnails) whose
    correlation, the better of b[j] with a[i] and with a[i]'s mirror image, is >= threshold.

    Blocks of `block` rows each way (None: all at once), so memory holds two
    block x block products, never the len(a) x len(b) matrix."""
    threshold = check_threshold(threshold)
    half = a.shape[1] // 2
    block = block or max(len(a), len(b), 1)
    found = []
    if progress:
        print("Comparing:")
    bar = _progress(len(a) * len(b), "pair", progress)
    for j0 in range(0, len(b), block):
        bj = np.asarray(b[j0 : j0 + block], np.float32)
        b_sym, b_anti = np.ascontiguousarray(bj[:, :half].T), np.ascontiguousarray(bj[:, half:].T)
        for i0 in range(0, len(a), block):
            ai = np.asarray(a[i0 : i0 + block], np.float32)  # per block: either side may be the large one
            best = ai[:, half:] @ b_anti
            np.abs(best, out=best)
            best += ai[:, :half] @ b_sym
            i, j = np.nonzero(best >= threshold)
            if len(i):
                # the sign of Q says which orientation matched (cheap: hits are few)
                anti = np.einsum("ij,ji->i", ai[i, half:], b_anti[:, j])
                found += zip((i0 + i).tolist(), (j0 + j).tolist(), np.minimum(best[i, j], 1.0).tolist(),
                             (anti < 0).tolist())
                if len(found) > MAX_PAIRS:
                    raise ValueError(f"more than {MAX_PAIRS:,} pairs correlate >= {threshold}: the threshold is "
                                     f"too low to find duplicates; raise --threshold (default {THRESHOLD}).")
            _advance(bar, len(best) * bj.shape[0])
    return sorted(found)


def find_overlap(data_dir, against, threshold=THRESHOLD, out=None, cache_dir=None, overwrite=False, size=SIZE,
                 block=BLOCK, workers=None, progress=True):
    """[Pair] of images of `data_dir` and `against` correlating >= `threshold` (see
    `correlate`), sorted by image then decreasing correlation; written to `out` (CSV)
    when given. Prints a summary."""
    threshold = check_threshold(threshold)
    _check_size(size)
    if out and os.path.exists(out) and not overwrite:
        raise ValueError(f"--out {out!r} exists; give --overwrite to replace it, or another --out.")
    files_a, files_b = list_images(data_dir, "--data-dir"), list_images(against, "--against")
    if os.path.realpath(data_dir) == os.path.realpath(against):  # every image would match itself
        raise ValueError(f"--data-dir and --against are the same folder ({data_dir!r}); compare a collection "
                         f"against another one (Caltech against ImageNet's training images).")
    a, files_a = thumbnails(data_dir, files_a, size, cache_dir, workers, progress, "--data-dir")
    b, files_b = thumbnails(against, files_b, size, cache_dir, workers, progress, "--against")
    start = time.perf_counter()
    hits = correlate(a, b, threshold, block, progress)
    seconds = time.perf_counter() - start
    pairs = sorted((Pair(files_a[i], files_b[j], round(c, 4), f) for i, j, c, f in hits),
                   key=lambda p: (p.image, -p.correlation, p.against))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with atomic_write(out, newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows((p.image, p.against, f"{p.correlation:.4f}", "yes" if p.flipped else "no") for p in pairs)
    flat = [int((~a.any(1)).sum()), int((~b.any(1)).sum())]
    print(f"{len(files_a):,} images of {data_dir} x {len(files_b):,} of {against} (and their mirror images), "
          f"{_count(len(a) * len(b) / max(seconds, 1e-9))} pairs/s: {len(pairs):,} pairs correlate >= "
          f"{threshold:g}, {len({p.image for p in pairs}):,} images of {data_dir}"
          + (f" (written to {out})" if out else "") + "."
          + (f" Flat images, which match nothing: {flat[0]:,} and {flat[1]:,}." if any(flat) else ""))
    if not out:
        for p in pairs[:20]:
            print(f"  {p.image}  {p.against}  {p.correlation:.4f}{'  (flipped)' if p.flipped else ''}")
        if len(pairs) > 20:
            print(f"  ... {len(pairs) - 20:,} more: give --out LIST to write them all.")
    return pairs


def read_list(path):
    """The image paths a list names: the first column of this tool's --out (its header
    starts "image,against"), or one path a line (blank lines and # comments skipped);
    each once, in order."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--exclude {path!r} is not a file; give the list `python -m kzoo.data.overlap "
                                f"--out` wrote, or a text file of image paths, one a line.")
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines()
    if lines and lines[0].startswith(",".join(HEADER[:2])):
        entries = [row[0] for row in csv.reader(lines[1:]) if row]
    else:
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return list(dict.fromkeys(entries))


_threshold_arg.check = check_threshold  # the same rule for a value given in Python


@dataclasses.dataclass(frozen=True)
class OverlapOptions:
    """One search for near-duplicates, typed: each flag declared once."""

    data_dir: str = option(rule=folder, required=True, help="the images to check (e.g. 101_ObjectCategories)")
    against: str = option(rule=folder, required=True, help="the images to look for them in (e.g. ImageNet's train/)")
    threshold: float = option(THRESHOLD, rule=_threshold_arg, help=f"lowest correlation listed, in (0, 1] (default "
                              f"{THRESHOLD})")
    out: str = option(rule=folder, help="CSV file of the pairs (image, against, correlation, flipped); default: "
                      "print the first 20")
    overwrite: bool = option(False, help="replace an existing --out")
    cache: str = option(rule=folder, help="folder for each folder's thumbnails, reused while its files are unchanged")
    block: int = option(BLOCK, rule=positive_int, help=f"thumbnails per block of the comparison (default {BLOCK}: "
                        f"about 150 MB of products)")
    workers: int = option(rule=positive_int, help="parallel decoders (default: the CPU count)")
    quiet: bool = option(False, help="no progress bars")

    def __post_init__(self):
        check_flags(self)


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.data.overlap", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, OverlapOptions)
    add_verbose_flag(parser)
    return parser


def main(argv=None):
    def checks(parser, args):
        if args.overwrite and not args.out:
            parser.error("--overwrite replaces an --out file; give --out FILE, or leave --overwrite out.")

    def run(args):
        o = flags_from(OverlapOptions, args)
        find_overlap(o.data_dir, o.against, o.threshold, o.out, o.cache, o.overwrite, block=o.block, workers=o.workers,
                     progress=not o.quiet)

    def interrupted(args):
        return (f"the thumbnails so far are in --cache {args.cache}; rerun to resume." if args.cache else
                "nothing was written.")

    return run_command(build_parser(), run, argv, checks=checks, interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
