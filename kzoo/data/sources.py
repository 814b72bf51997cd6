"""Where images come from: the built-in digits, a folder of class sub-folders, or tfds.

Every source yields unbatched (uint8 RGB image, int32 label) pairs, images of
any size; the paper transforms (`kzoo.data.transforms`) resize and crop.
"""

import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import pathlib
import re

import numpy as np
import tensorflow as tf

import kzoo  # kzoo.data.boxes, which reads images through this module, on first use
from kzoo.data import images


@dataclasses.dataclass
class Source:
    name: str
    train: tf.data.Dataset
    val: tf.data.Dataset
    train_size: int
    val_size: int
    class_names: list
    builtin: bool = False
    files: list = None  # image files, where the source has them (to name an undecodable one)
    description: str = ""  # what a built-in source is, said when a demo starts
    boxed: dict = None  # "train"/"val" -> (image, box, label) datasets, where boxes are known
    prepared: dict = None  # prepared shards (kzoo.data.shards): their manifest, with "root"
    fingerprint: str = None  # a digest of the training images and labels, where it is cheap (not tfds)

    @property
    def classes(self):
        return len(self.class_names)


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
        images, boxes, labels = kzoo.data.boxes.generated_shapes(n, size, split_seed)
        splits[split] = (tf.data.Dataset.from_tensor_slices((images, labels)),
                         tf.data.Dataset.from_tensor_slices((images, boxes, labels)), (images, labels))
    return Source(
        name="shapes",
        train=splits["train"][0],
        val=splits["val"][0],
        train_size=train_size,
        val_size=val_size,
        class_names=list(kzoo.data.boxes.SHAPE_COLOURS),
        builtin=True,
        fingerprint=_digest(*splits["train"][2]),
        description=f"{train_size + val_size} generated {size}px noise images with one red, green or "
                    f"blue square each, boxes known",
        boxed={"train": splits["train"][1], "val": splits["val"][1]},
    )


def _check_classes(what, names, fix):
    # One class "trains" to 0% error: every label is right.
    if len(names) < 2:
        raise ValueError(f"{what} has {len(names)} class{'' if len(names) == 1 else 'es'} "
                         f"({', '.join(map(repr, names)) or 'none'}); a classifier needs at least 2: {fix}.")


def class_folders(root):
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist (or is not a folder).")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{str(root)!r} has no class sub-folders; expected {root}/<class>/<image>.jpg.")
    _check_classes(f"{str(root)!r}", classes, "add a sub-folder of images per class")
    files, labels, signatures = [], [], []
    for label, name in enumerate(classes):
        found = images.found(root / name)
        if not found:
            raise ValueError(
                f"class folder {str(root / name)!r} holds no images ({', '.join(images.SUFFIXES)}); "
                f"add images or remove the folder."
            )
        signatures += [images.signature(path) for path in found]
        files += [str(p) for p in found]
        labels += [label] * len(found)
    return classes, files, labels, signatures


def decode_file(path):
    """An image file's path (a string tensor) -> its uint8 RGB pixels, read by
    kzoo.data.images (the one reader), inside tf.data maps. Eager code calls
    `images.read` itself."""
    return _pixels(tf.numpy_function(_read_path, [path], tf.uint8, stateful=False))


def decode_bytes(data):
    """Encoded image bytes (a string tensor) -> uint8 RGB pixels, by kzoo.data.images."""
    return _pixels(tf.numpy_function(_decode_item, [data], tf.uint8, stateful=False))


def _read_path(path):
    return images.read(os.fsdecode(_item(path)))


def _decode_item(data):
    return images.decode(_item(data))


def _item(value):
    """A string tensor's bytes: tf.numpy_function passes bytes inside tf.data, a 0-d array eagerly."""
    return value.item() if isinstance(value, np.ndarray) else value


def _pixels(image):
    return tf.ensure_shape(image, [None, None, 3])


def op_message(err):
    """A TF op error's own words, without the op's node name and call site."""
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*", "", err.message.strip().splitlines()[0])
    return text.strip().rstrip(".")


def _decode(path, label):
    return decode_file(path), label


def _files_dataset(files, labels):
    ds = tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, "int32")))
    return ds.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def folder_splits(root, val_fraction=0.1, seed=0):
    """(classes, {"train": (files, labels), "val": (files, labels)}, fingerprint) of
    `root/train/<class>/*` and `root/val/<class>/*`, or of `root/<class>/*` split by
    `val_fraction` (shuffled by `seed`). `fingerprint`: a digest of the training images
    (their paths under `root`, classes, sizes and end bytes, `images.signature`)."""
    root = pathlib.Path(root)
    if (root / "train").is_dir():
        classes, train_files, train_labels, train_signatures = class_folders(root / "train")
        val_dir = next((root / d for d in ("val", "validation") if (root / d).is_dir()), None)
        if val_dir is None:
            raise FileNotFoundError(f"{str(root / 'train')!r} exists but no val/ or validation/ beside it.")
        val_classes, val_files, val_labels, _ = class_folders(val_dir)
        if val_classes != classes:
            raise ValueError(f"{str(val_dir)!r} has classes {val_classes}, train/ has {classes}; they must match.")
    else:
        classes, files, labels, signatures = class_folders(root)
        order = np.random.default_rng(seed).permutation(len(files))
        n_val = max(1, int(round(len(files) * val_fraction)))
        if n_val >= len(files):
            raise ValueError(f"--val-fraction {val_fraction} of {str(root)!r}'s {len(files)} images holds out "
                             f"{n_val}, leaving none to train on; give a smaller fraction, or more images.")
        pick = lambda idx: ([files[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        (val_files, val_labels), (train_files, train_labels) = pick(order[:n_val]), pick(order[n_val:])
        train_signatures = [signatures[i] for i in order[n_val:]]
    digest = hashlib.sha256(json.dumps(classes).encode())
    for path, label, mark in zip(train_files, train_labels, train_signatures):
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0".encode() + mark)
    return classes, {"train": (train_files, train_labels), "val": (val_files, val_labels)}, digest.hexdigest()[:32]


def image_folder(root, val_fraction=0.1, seed=0, boxes=None):
    """`root/train/<class>/*` and `root/val/<class>/*`, or `root/<class>/*` split by `val_fraction`.
    `boxes`: {file stem: box} (`kzoo.data.boxes.read_boxes`) for localization."""
    root = pathlib.Path(root)
    classes, splits, fingerprint = folder_splits(root, val_fraction, seed)
    (train_files, train_labels), (val_files, val_labels) = splits["train"], splits["val"]
    return Source(
        name=root.name,
        train=_files_dataset(train_files, train_labels),
        val=_files_dataset(val_files, val_labels),
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
    kzoo.data.boxes.check_unique_names(train_files + val_files, boxes)
    boxed = {"train": kzoo.data.boxes.boxed_files(train_files, train_labels, boxes),
             "val": kzoo.data.boxes.boxed_files(val_files, val_labels, boxes)}
    if boxed["train"] is None and boxed["val"] is None:
        example = next(iter(boxes), "none")
        raise ValueError(f"no image under {str(root)!r} has a box in the box file (boxes are matched by "
                         f"file name without extension, e.g. {example!r}).")
    return boxed


def find_undecodable(files):
    """The first file the reader rejects, or None."""
    for path in files:
        try:
            images.read(path)
        except (ValueError, OSError):
            return path
    return None


def reader_error(err):
    """The image reader's own words (naming the file) inside a tf.data error, or None."""
    said = re.search(r"(?:ValueError|FileNotFoundError): (.*)", err.message)
    return said and said.group(1)


@contextlib.contextmanager
def naming_bad_images(source):
    """Turn tf.data's failure to read an image (or a shard's failed checksum) into an error
    that names the file."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.UnknownError) as err:
        if source.prepared:
            kzoo.data.shards.verify(source.prepared["root"], source.prepared)  # names a changed shard
            raise ValueError(f"a record of the prepared shards {source.prepared['root']!r} failed "
                             f"({op_message(err)}); prepare them again.") from err
        said = reader_error(err)
        if said:
            raise ValueError(f"an image of {source.name!r} failed: {said}") from err
        bad = find_undecodable(source.files or [])
        what = f"{bad!r} cannot be decoded; remove or replace it" if bad else op_message(err)
        raise ValueError(f"an image of {source.name!r} failed: {what}.") from err


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
    _check_classes(f"tfds dataset {name!r}", list(label.names), "pick a dataset with several classes")

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
            and kzoo.data.shards.holds_shards(data_dir):
        raise ValueError(f"--data-dir {data_dir!r} holds prepared shards but no manifest.json (deleted, or a "
                         f"preparation that did not finish); restore it, or rerun python -m kzoo.data.prepare "
                         f"--out {data_dir} with the flags it was prepared with.")
    if dataset is None and data_dir is not None and os.path.exists(os.path.join(data_dir, "manifest.json")):
        if boxes is not None:
            raise ValueError(f"--boxes goes with a folder of images; {data_dir!r} holds prepared shards, "
                             f"whose images are resized: give the folder they were prepared from.")
        return kzoo.data.shards.read(data_dir)
    if dataset is None and data_dir is not None:
        return image_folder(data_dir, seed=seed, boxes=kzoo.data.boxes.read_boxes(boxes) if boxes else None)
    if dataset is None or dataset in BUILTIN:
        return BUILTIN[dataset or "digits"](seed=seed)
    return tfds_source(dataset, data_dir=data_dir, download=download)
