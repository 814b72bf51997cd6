"""What every tf.data source shares: the `Source` record, image files and bytes decoded
inside tf.data by kzoo.data.images (the one reader), and tf.data's failures put in words
that name the file."""

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

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


def _decode_pair(path, label):
    return decode_file(path), label


def files_dataset(files, labels):
    ds = tf.data.Dataset.from_tensor_slices((files, np.asarray(labels, "int32")))
    return ds.map(_decode_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


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
