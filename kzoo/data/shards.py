"""Prepared shards: a folder of class images resized once, as AlexNet §2 down-sampled
ImageNet to 256 pixels before training, and packed into sharded TFRecord files.

    SHARDS/manifest.json                        classes, counts, the resize, the encoding, a sha256 per shard
    SHARDS/train-00000-of-00004.tfrecord ...    tf.train.Example: image (encoded), label, shape
    SHARDS/val-00000-of-00001.tfrecord

The stored pixels are the recipes' own first step (kzoo.data.transforms.resized: the
antialiased resize of the shorter side, rounded to 8 bits), kept losslessly (raw bytes or
PNG), so a recipe reading the shards passes them through unchanged and trains exactly
as on the folder. Written by `python -m kzoo.data.prepare`; read by every recipe's
--data-dir (kzoo.data.sources.load_source).
"""

import dataclasses
import hashlib
import json
import os
import re
import time

import tensorflow as tf

from kzoo.data import tfdata, transforms
from kzoo.data.images import folder_splits
from kzoo.utils.files import atomic_path, atomic_write, sha256
from kzoo.utils.progress import progress_bar, rate

MANIFEST = "manifest.json"
PROGRESS = ".progress.json"  # the shards done so far, while a preparation runs (gone when it completes)
FORMAT = "kzoo-shards-1"
ENCODINGS = ("png", "raw", "jpeg", "original")
LOSSLESS = ("png", "raw", "original")
READ_CYCLE = 16  # shards read at once (tf.data.TFRecordDataset's num_parallel_reads)
FLAGS = {"short_side": "--short-side", "center": "--center", "encoding": "--encoding", "quality": "--quality",
         "images_per_shard": "--images-per-shard", "split": "--val-fraction / --seed", "data": "--data-dir",
         "read_cycle": "(kzoo's version)"}


def layout(count, per_shard, cycle):
    """The image indices each shard holds, in order. Reading the shards with an interleave of
    `cycle` (one record of each open shard in turn; a shard's slot goes to the next shard when
    it ends) yields 0, 1, 2, ...: the folder's own order, so training on the shards shuffles
    and trains exactly as on the folder. Each group of `cycle` shards deals its consecutive
    images round-robin."""
    shards = max(1, -(-count // per_shard))
    out = []
    for first in range(0, shards, cycle):
        k = min(cycle, shards - first)
        group = range(first * per_shard, min(count, (first + k) * per_shard))
        out += [list(group[j::k]) for j in range(k)]
    return out


def shard_name(split, index, total):
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def settings_of(data_dir, classes, splits, *, short_side, center, encoding, quality, images_per_shard, split):
    """What makes two preparations the same: compared on a rerun (resume) and against an
    existing output (never overwritten with other settings)."""
    listing = hashlib.sha256()
    for name, (files, labels) in splits.items():
        for path, label in zip(files, labels):
            rel = os.path.relpath(path, data_dir)
            listing.update(f"{name}\t{label}\t{rel}\t{os.path.getsize(path)}\n".encode())
    return {"short_side": short_side or None, "center": center, "encoding": encoding,
            "quality": quality if encoding == "jpeg" else None, "images_per_shard": images_per_shard,
            "split": split, "read_cycle": READ_CYCLE,
            "data": {"root": os.path.abspath(data_dir), "classes": classes, "files_sha256": listing.hexdigest()}}


def _differences(old, new):
    """The flags whose values differ, as 'FLAG old -> new' phrases."""
    out = []
    for key in new:
        if old.get(key) != new[key]:
            if key == "data":
                out.append(f"--data-dir: other images (or another folder) than {old['data'].get('root')!r} had")
            else:
                out.append(f"{FLAGS.get(key, key)} {old.get(key)} -> {new[key]}")
    return out


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path!r} is not a kzoo shards manifest ({err}); restore it, or prepare the shards "
                         f"again into a new --out.") from None


def _check_out(out, settings):
    """{shard file: record} already done in `out` for these settings; refuse an `out` that holds
    anything else (another preparation, or files that are not shards)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is a file; give a folder (a new one is created).")
    manifest, progress = os.path.join(out, MANIFEST), os.path.join(out, PROGRESS)
    for path, what in ((manifest, "shards prepared"), (progress, "an interrupted preparation")):
        if os.path.exists(path):
            record = _read_json(path)
            if not isinstance(record, dict) or record.get("format") != FORMAT or "settings" not in record:
                raise ValueError(f"{path!r} is not a kzoo shards manifest; pick another --out.")
            if record["settings"] != settings:
                changed = "; ".join(_differences(record["settings"], settings))
                raise ValueError(f"--out {out!r} holds {what} with other settings ({changed}). kzoo does not "
                                 f"overwrite them: give another --out, rerun with the settings they were made "
                                 f"with, or delete {out!r} first.")
            return {item["file"]: item for split in record.get("shards", {}).values() for item in split}
    others = [f for f in os.listdir(out) if not f.startswith(".tmp-") and not SHARD_FILE.fullmatch(f)] \
        if os.path.isdir(out) else []
    if others:
        raise ValueError(f"--out {out!r} holds files that are not kzoo shards ({', '.join(sorted(others)[:3])}); "
                         f"give a new or empty folder.")
    return {}  # shards without a manifest (deleted) are written again: nothing records what they hold


def _encoder(settings):
    """(path, label) -> (encoded image, label, shape) as a tf.data map."""
    encoding, short_side, center = settings["encoding"], settings["short_side"], settings["center"]

    def fn(path, label):
        if encoding == "original":  # the file's own bytes; its shape is in them
            return tf.io.read_file(path), label, tf.zeros([3], tf.int64)
        image = tfdata.decode_file(path)  # the reader names a file it cannot read
        if short_side:
            image = transforms.resized(image, short_side)
            if center:
                image = transforms.center_crop(image, center)
        if encoding == "png":
            encoded = tf.io.encode_png(image, compression=1)  # decodes 2x faster than level 6 (measured)
        elif encoding == "jpeg":
            encoded = tf.io.encode_jpeg(image, quality=settings["quality"])
        else:
            encoded = tf.io.serialize_tensor(image)
        return encoded, label, tf.cast(tf.shape(image), tf.int64)

    return fn


def _example(encoded, label, shape):
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
               "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(shape)))}
    # The features map in a fixed order: the same data gives the same bytes (comparable hashes).
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def _write_shards(out, todo, splits, encode, verbose):
    """Write each (split, file, image indices) of `todo`, one tf.data pass over all their
    images; yields (file, record) as each shard completes (renamed into place)."""
    paths = [splits[name][0][i] for name, _, idx in todo for i in idx]
    labels = [splits[name][1][i] for name, _, idx in todo for i in idx]
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), tf.constant(labels, tf.int64)))
    images = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    images = images.as_numpy_iterator()
    bar = progress_bar(len(paths), verbose=verbose, unit_name="image", stateful_metrics=["images/s"])
    start, seen = time.perf_counter(), 0
    for name, file, idx in todo:
        path = os.path.join(out, file)
        with atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp) as writer:
                for _ in idx:
                    try:
                        encoded, label, shape = next(images)
                    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
                        said = tfdata.reader_error(err)
                        if said is None:
                            bad = tfdata.find_undecodable([splits[name][0][i] for i in idx])
                            said = f"{bad!r} cannot be decoded" if bad else tfdata.op_message(err)
                        raise ValueError(f"{said.rstrip('.')}, then rerun (finished shards are "
                                         f"kept).") from None
                    writer.write(_example(encoded, label, shape))
                    seen += 1
                    bar.update(seen, [("images/s", rate(seen, time.perf_counter() - start))])
        yield file, {"file": file, "count": len(idx), "bytes": os.path.getsize(path), "sha256": sha256(path)}


def _plan(out, splits, images_per_shard, cycle, done):
    """(plan: split -> [(shard file, image indices)], records: split -> [a complete shard's
    record kept, or None], todo: [(split, file, indices)] to write)."""
    plan = {}
    for name, (files, _) in splits.items():
        groups = layout(len(files), images_per_shard, cycle)
        plan[name] = [(shard_name(name, i, len(groups)), idx) for i, idx in enumerate(groups)]
    records, todo = {name: [] for name in plan}, []
    for name, shards in plan.items():
        for file, idx in shards:
            kept = done.get(file)
            path = os.path.join(out, file)
            if kept and kept["count"] == len(idx) and os.path.exists(path) and sha256(path) == kept["sha256"]:
                records[name].append(kept)
            else:
                records[name].append(None)
                todo.append((name, file, idx))
    return plan, records, todo


def prepare(data_dir, out, *, short_side=256, center=None, encoding=None, quality=95, images_per_shard=1024,
            val_fraction=0.1, seed=0, verbose=1):
    """Write `data_dir`'s training and validation images into `out` as shards (module
    docstring); returns the manifest. `encoding` defaults to "raw" (the uint8 array: decoding
    is a copy), or with `short_side` 0 (sizes kept) to "original" (the files' own bytes). A
    rerun resumes: complete shards whose sha256 matches are kept, the rest are written again."""
    encoding = encoding or ("raw" if short_side else "original")
    if encoding not in ENCODINGS:
        raise ValueError(f"argument --encoding: invalid choice: {encoding!r} (choose from "
                         f"{', '.join(map(repr, ENCODINGS))})")
    if encoding == "original" and short_side:
        raise ValueError("argument --encoding: original keeps the files' own bytes, so it needs --short-side 0 "
                         "(no resize); give --encoding raw or png for resized images.")
    if center and not short_side:
        raise ValueError("argument --center: a centre square is cut from resized images; give a --short-side above 0 too.")
    if center and center > short_side:
        raise ValueError(f"argument --center: {center} is larger than --short-side {short_side}; the square must "
                         f"fit in the resized image.")
    classes, splits, _ = folder_splits(data_dir, val_fraction, seed)
    split = "folders" if os.path.isdir(os.path.join(data_dir, "train")) else {"val_fraction": val_fraction,
                                                                             "seed": seed}
    settings = settings_of(data_dir, classes, splits, short_side=short_side, center=center, encoding=encoding,
                           quality=quality, images_per_shard=images_per_shard, split=split)
    done = _check_out(out, settings)
    os.makedirs(out, exist_ok=True)
    for leftover in (f for f in os.listdir(out) if f.startswith(".tmp-")):  # a killed run's partial shard
        os.remove(os.path.join(out, leftover))
    plan, records, todo = _plan(out, splits, images_per_shard, settings["read_cycle"], done)
    progress = {"format": FORMAT, "settings": settings,
                "shards": {n: [r for r in rs if r] for n, rs in records.items()}}
    if verbose:
        kept = sum(len(rs) for rs in progress["shards"].values())
        print(f"Preparing {out}: {sum(len(f) for f, _ in splits.values())} images of {len(classes)} classes "
              f"from {data_dir}" + (f", resized to a shorter side of {short_side}" if short_side else ", sizes kept")
              + (f", centre {center}x{center}" if center else "") + f", {encoding}"
              + (f"; {kept} complete shard(s) kept" if kept else "") + ".")
    with atomic_write(os.path.join(out, PROGRESS)) as f:
        json.dump(progress, f, indent=1)
    for file, record in _write_shards(out, todo, splits, _encoder(settings), verbose):
        name = file.split("-")[0]
        records[name][[f for f, _ in plan[name]].index(file)] = record
        progress["shards"][name] = [r for r in records[name] if r]
        with atomic_write(os.path.join(out, PROGRESS)) as f:  # a rerun keeps this shard
            json.dump(progress, f, indent=1)
    manifest = {"format": FORMAT, "name": os.path.basename(os.path.abspath(data_dir)), "classes": classes,
                "counts": {name: len(files) for name, (files, _) in splits.items()},
                "resize": {"short_side": settings["short_side"], "center": center},
                "encoding": encoding, "lossless": encoding in LOSSLESS, "read_cycle": settings["read_cycle"],
                "settings": settings, "shards": records}
    if todo or not os.path.exists(os.path.join(out, MANIFEST)):
        with atomic_write(os.path.join(out, MANIFEST)) as f:  # last: its presence means complete
            json.dump(manifest, f, indent=1)
    if os.path.exists(os.path.join(out, PROGRESS)):
        os.remove(os.path.join(out, PROGRESS))
    if verbose:
        size = sum(r["bytes"] for rs in records.values() for r in rs)
        print(f"{out}: {manifest['counts']['train']} training and {manifest['counts']['val']} validation images in "
              f"{sum(len(rs) for rs in records.values())} shards, {size / 1e6:.1f} MB"
              + ("" if todo else " (already complete: nothing written)") + ".")
    return manifest


SHARD_FILE = re.compile(r"(train|val)-\d{5}-of-\d{5}\.tfrecord")


def holds_shards(folder):
    """Whether `folder` holds shard files (made by `prepare`), with or without their manifest."""
    return os.path.isdir(folder) and any(SHARD_FILE.fullmatch(f) for f in os.listdir(folder))


def _manifest(root):
    path = os.path.join(root, MANIFEST)
    manifest = _read_json(path)
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != FORMAT:
        raise ValueError(f"{path!r} is not a kzoo shards manifest (format {fmt!r}, expected "
                         f"{FORMAT!r}); prepare the shards again with python -m kzoo.data.prepare.")
    wrong = _wrong_entries(manifest)
    if wrong:
        raise ValueError(f"{path!r} is damaged or was edited ({wrong}); restore it from a copy, or rerun python -m "
                         f"kzoo.data.prepare --out {root} with the flags it was prepared with (complete shards are "
                         f"kept).")
    return manifest


def _wrong_entries(m):
    """What in a manifest is not as `prepare` writes it (shards must be files of the folder)."""
    def shards_ok(items, count):
        return (isinstance(items, list) and items and all(
            isinstance(i, dict) and isinstance(i.get("file"), str) and SHARD_FILE.fullmatch(i["file"])
            and _is_int(i.get("bytes")) and _is_int(i.get("count")) and isinstance(i.get("sha256"), str)
            for i in items) and sum(i["count"] for i in items) == count)

    counts, shards_ = m.get("counts"), m.get("shards")
    checks = {
        "name": isinstance(m.get("name"), str) and m.get("name"),
        "classes": isinstance(m.get("classes"), list) and len(m["classes"]) >= 2
        and all(isinstance(c, str) for c in m["classes"]),
        "encoding": m.get("encoding") in ENCODINGS,
        "read_cycle": _is_int(m.get("read_cycle")) and m["read_cycle"] >= 1,
        "counts": isinstance(counts, dict) and all(_is_int(counts.get(k)) and counts[k] > 0 for k in ("train", "val")),
        "settings": isinstance(m.get("settings"), dict) and isinstance(m["settings"].get("data"), dict),
        "resize": isinstance(m.get("resize"), dict) and {"short_side", "center"} <= set(m["resize"]),
    }
    checks["shards"] = checks["counts"] and isinstance(shards_, dict) and all(
        shards_ok(shards_.get(k), counts[k]) for k in ("train", "val"))
    return ", ".join(k for k, ok in checks.items() if not ok)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _again(root, manifest):
    return (f"python -m kzoo.data.prepare --data-dir {manifest['settings']['data'].get('root')} --out {root} "
            f"(with the flags it was prepared with) rewrites the damaged shards")


def verify(root, manifest=None):
    """Check every shard of `root` against the manifest's sha256; a mismatch is an error naming it."""
    manifest = manifest or _manifest(root)
    for split in manifest["shards"].values():
        for item in split:
            path = os.path.join(root, item["file"])
            if not os.path.exists(path) or sha256(path) != item["sha256"]:
                state = "is missing" if not os.path.exists(path) else "does not match its sha256 in manifest.json"
                raise ValueError(f"shard {path!r} {state} (damaged or changed since it was prepared); "
                                 f"{_again(root, manifest)}.")


def _decoder(encoding):
    features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
                "shape": tf.io.FixedLenFeature([3], tf.int64)}

    def fn(record):
        example = tf.io.parse_single_example(record, features)
        data = example["image"]
        if encoding == "png":
            image = tf.io.decode_png(data, channels=3)
        elif encoding == "jpeg":
            image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")  # libjpeg's exact IDCT, as Pillow
        elif encoding == "raw":
            image = tf.io.parse_tensor(data, tf.uint8)
        else:
            image = tfdata.decode_bytes(data)  # the file's own bytes: the one reader
        return tf.ensure_shape(image, [None, None, 3]), tf.cast(example["label"], tf.int32)

    return fn


def read(root):
    """The Source of prepared shards in `root`: (uint8 image, int32 label) datasets in the
    folder's order, reading `read_cycle` shards in parallel."""
    manifest = _manifest(root)
    for split in manifest["shards"].values():  # cheap: sizes; the sha256 is checked when a record fails
        for item in split:
            path = os.path.join(root, item["file"])
            if not os.path.exists(path) or os.path.getsize(path) != item["bytes"]:
                state = "is missing" if not os.path.exists(path) else (
                    f"has {os.path.getsize(path)} bytes, manifest.json says {item['bytes']} (truncated or changed)")
                raise ValueError(f"shard {path!r} {state}; {_again(root, manifest)}.")
    decode = _decoder(manifest["encoding"])

    def split(name):
        files = [os.path.join(root, item["file"]) for item in manifest["shards"][name]]
        ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(manifest["read_cycle"], len(files)))
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return tfdata.Source(
        name=manifest["name"],
        train=split("train"),
        val=split("val"),
        train_size=manifest["counts"]["train"],
        val_size=manifest["counts"]["val"],
        class_names=list(manifest["classes"]),
        prepared={**manifest, "root": str(root)},
        fingerprint=hashlib.sha256(json.dumps([item["sha256"] for item in manifest["shards"]["train"]])
                                   .encode()).hexdigest()[:32],  # the training shards' bytes
    )


def check_fit(source, p):
    """Refuse shards whose stored resize is not the first step of preprocessing `p` (the
    recipe's), saying how to prepare them for it."""
    if not source.prepared:
        return
    root, resize = source.prepared["root"], source.prepared["resize"]
    short, center = resize["short_side"], resize["center"]
    if short is None:
        return  # the images at their own size: any pipeline's resize applies
    data = source.prepared["settings"]["data"]["root"]
    fix = f"prepare them again into a new --out with python -m kzoo.data.prepare --data-dir {data} --out NEW "
    if isinstance(p.resize, tuple):
        raise ValueError(f"--data-dir {root!r} holds images resized to a shorter side of {short}, but this recipe "
                         f"draws the shorter side at random from {p.resize[0]}-{p.resize[1]} per image (scale "
                         f"augmentation), which needs the images at their own size: {fix}--short-side 0 "
                         f"(no resize; the files' bytes packed into shards).")
    wanted = f"--short-side {p.resize}" + (f" --center {p.center}" if p.center else "")
    if short != p.resize:
        raise ValueError(f"--data-dir {root!r} holds images resized to a shorter side of {short}; this recipe "
                         f"resizes to {p.resize}: {fix}{wanted}.")
    if center is not None and center != p.center:
        need = f"the centre {p.center}x{p.center}" if p.center else "the whole resized images"
        raise ValueError(f"--data-dir {root!r} holds {center}x{center} centre squares; this recipe needs {need}: "
                         f"{fix}{wanted}.")



def check_protocol(source, p, protocol):
    """Refuse evaluating resized shards where the protocol resizes otherwise than `p`'s
    evaluation resize: the dense and multi-scale protocols rescale the original image, which
    the shards no longer hold."""
    if not source.prepared or source.prepared["resize"]["short_side"] is None:
        return
    if protocol not in ("center", "10crop"):
        short = source.prepared["resize"]["short_side"]
        raise ValueError(f"--protocol {protocol} resizes each original image to several sizes, but --data-dir "
                         f"{source.prepared['root']!r} holds them resized to a shorter side of {short}: give the "
                         f"image folder itself, or shards prepared with --short-side 0.")
    check_fit(source, dataclasses.replace(p, resize=p.eval_resize))  # ResNet's evaluation: its fixed 256
