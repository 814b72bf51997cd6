"""Where images come from: the built-in digits, a folder of class sub-folders, or tfds.

Every source yields unbatched (uint8 RGB image, int32 label) pairs, images of
any size; the paper transforms (`kzoo.data.transforms`) resize and crop.
"""

import contextlib
import dataclasses
import difflib
import hashlib
import os
import pathlib

import numpy as np
import tensorflow as tf

from kzoo.data import boxes as box_files, shards
from kzoo.data.images import check_classes, folder_splits
from kzoo.data.tfdata import Source, decode_bytes, decode_file, files_dataset, find_undecodable, op_message, reader_error


def _digest(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


def builtin_digits(val_fraction=0.2, seed=0):
    """scikit-learn's 1,797 handwritten digits (8x8, 10 classes): real images, no download."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = int(round(len(labels) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return Source(
        name="digits",
        train=tf.data.Dataset.from_tensor_slices((images[train], labels[train])),
        val=tf.data.Dataset.from_tensor_slices((images[val], labels[val])),
        train_size=len(train),
        val_size=len(val),
        class_names=[str(d) for d in range(10)],
        builtin=True,
        fingerprint=_digest(images[train], labels[train]),
        description="scikit-learn's 1,797 handwritten digits (8x8, 10 classes; light strokes on a black background)",
    )


def builtin_shapes(train_size=1200, val_size=300, size=96, seed=0):
    """Generated noise images with one coloured square each (3 classes, boxes known): the
    built-in localization data."""
    splits = {}
    for split, n, split_seed in (("train", train_size, seed), ("val", val_size, seed + 1)):
        images, boxes, labels = box_files.generated_shapes(n, size, split_seed)
        splits[split] = (tf.data.Dataset.from_tensor_slices((images, labels)),
                         tf.data.Dataset.from_tensor_slices((images, boxes, labels)), (images, labels))
    return Source(
        name="shapes",
        train=splits["train"][0],
        val=splits["val"][0],
        train_size=train_size,
        val_size=val_size,
        class_names=list(box_files.SHAPE_COLOURS),
        builtin=True,
        fingerprint=_digest(*splits["train"][2]),
        description=f"{train_size + val_size} generated {size}px noise images with one red, green or "
                    f"blue square each, boxes known",
        boxed={"train": splits["train"][1], "val": splits["val"][1]},
    )


def image_folder(root, val_fraction=0.1, seed=0, boxes=None):
    """`root/train/<class>/*` and `root/val/<class>/*`, or `root/<class>/*` split by `val_fraction`.
    `boxes`: {file stem: box} (`box_files.read_boxes`) for localization."""
    root = pathlib.Path(root)
    classes, splits, fingerprint = folder_splits(root, val_fraction, seed)
    (train_files, train_labels), (val_files, val_labels) = splits["train"], splits["val"]
    return Source(
        name=root.name,
        train=files_dataset(train_files, train_labels),
        val=files_dataset(val_files, val_labels),
        train_size=len(train_files),
        val_size=len(val_files),
        class_names=classes,
        files=train_files + val_files,
        fingerprint=fingerprint,
        boxed=_boxed_splits(train_files, train_labels, val_files, val_labels, boxes, root),
    )


def _boxed_splits(train_files, train_labels, val_files, val_labels, boxes, root):
    if boxes is None:
        return None
    _check_unique_names(train_files + val_files, boxes)
    boxed = {"train": _boxed_files(train_files, train_labels, boxes),
             "val": _boxed_files(val_files, val_labels, boxes)}
    if boxed["train"] is None and boxed["val"] is None:
        example = next(iter(boxes), "none")
        raise ValueError(f"no image under {str(root)!r} has a box in the box file (boxes are matched by "
                         f"file name without extension, e.g. {example!r}).")
    return boxed


def _decode_boxed(path, box, label):
    return decode_file(path), box, label


def _check_unique_names(files, boxes):
    """Boxes are matched by file stem: two boxed images with one stem would share a box."""
    stems = {}
    for f in files:
        stems.setdefault(pathlib.Path(f).stem, []).append(f)
    shared = [(s, fs) for s, fs in stems.items() if s in boxes and len(fs) > 1]
    if shared:
        stem, fs = shared[0]
        raise ValueError(f"boxes are matched by file name, and {len(fs)} images are named {stem!r} ({fs[0]}, "
                         f"{fs[1]}, ...); give the images unique names.")


def _boxed_files(files, labels, boxes):
    """(image, box, label) dataset over the `files` that have a box in `boxes`."""
    keep = [(f, boxes[pathlib.Path(f).stem], l) for f, l in zip(files, labels) if pathlib.Path(f).stem in boxes]
    if not keep:
        return None
    f, b, l = zip(*keep)
    ds = tf.data.Dataset.from_tensor_slices((list(f), np.asarray(b, "float32"), np.asarray(l, "int32")))
    return ds.map(_decode_boxed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@contextlib.contextmanager
def naming_bad_images(source):
    """Turn tf.data's failure to read an image (or a shard's failed checksum) into an error
    that names the file."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError) as err:
        if source.prepared:
            shards.verify(source.prepared["root"], source.prepared)  # names a changed shard
            raise ValueError(f"a record of the prepared shards {source.prepared['root']!r} failed "
                             f"({op_message(err)}); prepare them again.") from err
        said = reader_error(err)
        if said:
            raise ValueError(f"an image of {source.name!r} failed: {said}") from err
        bad = find_undecodable(source.files or [])
        what = f"{bad!r} cannot be decoded; remove or replace it" if bad else op_message(err)
        raise ValueError(f"an image of {source.name!r} failed: {what}.") from err


def boxed_examples(source, split, limit=None):
    """Lists (uint8 images, (N, 4) boxes, labels) of `source`'s boxed `split` ("train" or "val")."""
    if not source.boxed or source.boxed.get(split) is None:
        raise ValueError(f"dataset {source.name!r} has no boxes for its {split} images; give --boxes FILE "
                         f"(CSV image,x1,y1,x2,y2 or a folder of ILSVRC/VOC XML) or use --dataset shapes.")
    ds = source.boxed[split]
    with naming_bad_images(source):
        triples = list(ds.take(limit) if limit else ds)
    images = [t[0].numpy() for t in triples]
    boxes = np.stack([t[1].numpy() for t in triples]).astype("float32")
    labels = np.array([int(t[2]) for t in triples])
    for image, box in zip(images, boxes):
        h, w = image.shape[:2]
        if box[0] < 0 or box[1] < 0 or box[2] > w + 1 or box[3] > h + 1:
            raise ValueError(f"box {box.tolist()} lies outside its {w}x{h} image; boxes are "
                             f"x1,y1,x2,y2 in pixels of the stored image.")
    return images, boxes, labels


def tfds_source(name, data_dir=None, download=False):
    """A tensorflow-datasets builder's train and validation (or test) splits."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:  # its message lists every dataset: hundreds of lines
        known = [line.strip()[2:] for line in str(err).splitlines() if line.strip().startswith("- ")]
        close = difflib.get_close_matches(name, [*BUILTIN, *known], n=3)
        raise ValueError(f"--dataset {name!r} is neither built in ({', '.join(BUILTIN)}) nor a tensorflow-datasets "
                         f"name" + (f"; did you mean {', '.join(map(repr, close))}?" if close else ".")) from None
    if download:
        builder.download_and_prepare()
    elif not os.path.isdir(builder.data_dir) or not builder.info.splits:
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in {data_dir or tfds.core.constants.DATA_DIR!r}. "
            f"Prepare it (for imagenet2012 put the manual download in <data_dir>/downloads/manual) "
            f"and pass --download, or point --data-dir at a prepared copy."
        )
    splits = builder.info.splits
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or val_split is None:
        raise ValueError(f"tfds dataset {name!r} needs a train and a validation or test split; has {list(splits)}.")
    label = builder.info.features["label"]
    check_classes(f"tfds dataset {name!r}", list(label.names), "pick a dataset with several classes")

    feature = builder.info.features["image"]
    # 8-bit images stay encoded in the records: the one reader decodes them, as it decodes files.
    encoded = isinstance(feature, tfds.features.Image) and feature.dtype == tf.uint8
    decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None

    def pairs(split):
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1))
        image = decode_bytes if encoded else _rgb
        return ds.map(lambda ex: (image(ex["image"]), tf.cast(ex["label"], tf.int32)))

    return Source(
        name=name,
        train=pairs("train"),
        val=pairs(val_split),
        train_size=splits["train"].num_examples,
        val_size=splits[val_split].num_examples,
        class_names=list(label.names),
    )


def _rgb(image):
    return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image


def held_out_indices(train_size, n, seed):
    """The positions in the training set that `hold_out(source, n, seed)` holds out, sorted."""
    return np.sort(np.random.default_rng(seed).permutation(train_size)[:n])


def hold_out(source, n, seed=0):
    """`source` with `n` of its training images as its validation set (ResNet §4.2's 45k/5k
    split for tuning, `--val-split N`) and the rest as its training set; its own validation
    (or test) images are not used. The same `seed` holds out the same images; the training
    set must come in a fixed order (every kzoo source does)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n < source.train_size:
        raise ValueError(f"argument --val-split: expected a number of training images in [1, {source.train_size - 1}] "
                         f"({source.name!r} has {source.train_size} training images, and some must stay for "
                         f"training), got {n!r}; give a smaller N, or leave --val-split out to validate on "
                         f"{source.name!r}'s own validation set.")
    mask = np.zeros(source.train_size, bool)
    mask[held_out_indices(source.train_size, n, seed)] = True
    mask = tf.constant(mask)

    def part(keep):
        ds = source.train.enumerate().filter(lambda i, _: tf.equal(tf.gather(mask, i), keep))
        return ds.map(lambda _, example: example)  # sequential: in order (no `deterministic`, which warns here)

    # The boxed splits (localization) would no longer match the classification split: dropped.
    fingerprint = source.fingerprint and _digest(np.frombuffer(source.fingerprint.encode(), np.uint8),
                                                 np.array([n, seed]))
    return dataclasses.replace(source, train=part(False), val=part(True), train_size=source.train_size - n,
                               val_size=n, boxed=None, fingerprint=fingerprint)


BUILTIN = {"digits": builtin_digits, "shapes": builtin_shapes}


def load_source(dataset=None, data_dir=None, download=False, seed=0, boxes=None):
    """The source a recipe's --dataset / --data-dir / --boxes flags name (none: the built-in
    digits); a --data-dir with a manifest.json holds prepared shards (kzoo.data.prepare).
    `boxes`: a box file or folder for an image folder (localization)."""
    if boxes is not None and (dataset is not None or data_dir is None):
        raise ValueError("--boxes goes with --data-dir (a folder of class sub-folders), not with --dataset; "
                         "the built-in --dataset shapes has its boxes.")
    if dataset in BUILTIN and (data_dir is not None or download):
        given = " and ".join(f for f, v in (("--data-dir", data_dir is not None), ("--download", download)) if v)
        raise ValueError(f"--dataset {dataset} is built in: {given} would be ignored. Leave {given} out, or give "
                         f"--data-dir alone for a folder of class sub-folders.")
    if download and dataset is None:
        raise ValueError("--download lets tensorflow-datasets prepare a --dataset; give --dataset NAME with it "
                         "(a --data-dir folder of images needs no download).")
    if dataset is None and data_dir is not None and not os.path.exists(os.path.join(data_dir, "manifest.json")) \
            and shards.holds_shards(data_dir):
        raise ValueError(f"--data-dir {data_dir!r} holds prepared shards but no manifest.json (deleted, or a "
                         f"preparation that did not finish); restore it, or rerun python -m kzoo.data.prepare "
                         f"--out {data_dir} with the flags it was prepared with.")
    if dataset is None and data_dir is not None and os.path.exists(os.path.join(data_dir, "manifest.json")):
        if boxes is not None:
            raise ValueError(f"--boxes goes with a folder of images; {data_dir!r} holds prepared shards, "
                             f"whose images are resized: give the folder they were prepared from.")
        return shards.read(data_dir)
    if dataset is None and data_dir is not None:
        return image_folder(data_dir, seed=seed, boxes=box_files.read_boxes(boxes) if boxes else None)
    if dataset is None or dataset in BUILTIN:
        return BUILTIN[dataset or "digits"](seed=seed)
    return tfds_source(dataset, data_dir=data_dir, download=download)
