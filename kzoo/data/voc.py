"""PASCAL VOC 2012 classification data (ZFNet §5.2): a devkit folder or tfds `voc/2012`.

Each image carries 20 labels in the devkit's convention: 1 (an object of the class
that is not marked difficult), 0 (only difficult objects of it: ignored by the
metric), -1 (no object of it). Nothing is downloaded: the devkit folder
(`JPEGImages/`, `Annotations/*.xml`, `ImageSets/Main/{train,val}.txt`) or a prepared
tfds data_dir must already be there.
"""

import os
import pathlib

import numpy as np

from kzoo.data import images
from kzoo.data.boxes import read_xml
from kzoo.data.caltech import Collection

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
SPLITS = ("train", "val")
_DEVKIT_PARTS = ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main"))

# The classifiers the VOC protocol trains on frozen features (kzoo.tasks.voc): here, where
# `python -m kzoo.recipes.voc2012 --help` reads them without loading Keras.
LOSSES = ("softmax", "logistic")


def image_labels(objects, where):
    """The devkit's 1 / 0 / -1 label per class of one image's objects."""
    labels = np.full(len(VOC_CLASSES), -1, np.int8)
    for name, _, difficult in objects:
        if name not in VOC_CLASSES:
            raise ValueError(f"{where}: class {name!r} is not one of VOC's 20 ({', '.join(VOC_CLASSES)}).")
        c = VOC_CLASSES.index(name)
        labels[c] = max(labels[c], 0 if difficult else 1)
    return labels


def find_devkit(data_dir):
    """The folder holding JPEGImages/ etc.: `data_dir` itself, or VOC2012/ or VOCdevkit/VOC2012/ under it."""
    root = pathlib.Path(data_dir)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if all((candidate / part).is_dir() for part in _DEVKIT_PARTS):
            return candidate
    return None


def devkit_split(root, split):
    """A split of a VOC devkit folder as a Collection with (N, 20) devkit labels."""
    root = pathlib.Path(root)
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} is missing: a VOC devkit folder lists its {split} images there "
                                f"(one image id per line).")
    ids = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{listing} lists no images.")
    files, labels = [], []
    for image_id in ids:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        annotation = root / "Annotations" / f"{image_id}.xml"
        for path, what in ((image, "image"), (annotation, "annotation")):
            if not path.is_file():
                raise FileNotFoundError(f"{listing} lists {image_id!r} but its {what} {path} is missing.")
        files.append(str(image))
        labels.append(image_labels(read_xml(annotation, boxes=False)[1], str(annotation)))
    return Collection(f"voc2012-{split}", files, np.stack(labels), list(VOC_CLASSES))


def _decoded(jpeg):
    return images.decode(jpeg, "a VOC image")


def tfds_split(data_dir, split):
    """A split of a prepared tfds `voc/2012` ("val" reads its "validation"), in image-id order.
    Images stay encoded until read: a split decoded whole would take gigabytes."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("voc/2012", data_dir=data_dir)
    names = tuple(builder.info.features["objects"]["label"].names)
    if names != VOC_CLASSES:
        raise ValueError(f"tfds voc/2012 in {data_dir!r} has classes {names}; expected VOC's 20.")
    examples = []
    ds = builder.as_dataset(split="validation" if split == "val" else split, shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
    for example in ds.as_numpy_iterator():
        row = np.full(len(VOC_CLASSES), -1, np.int8)
        for label, difficult in zip(example["objects"]["label"], example["objects"]["is_difficult"]):
            row[label] = max(row[label], 0 if difficult else 1)
        examples.append((example["image/filename"].decode(), example["image"], row))
    if not examples:
        raise ValueError(f"tfds voc/2012 in {data_dir!r} has no {split} images.")
    examples.sort(key=lambda e: e[0])
    images = [lambda jpeg=jpeg: _decoded(jpeg) for _, jpeg, _ in examples]
    return Collection(f"voc2012-{split}", images, np.stack([row for _, _, row in examples]), list(VOC_CLASSES))


def _tfds_prepared(data_dir):
    return data_dir is not None and (pathlib.Path(data_dir) / "voc" / "2012").is_dir()


def load_voc(data_dir=None, splits=SPLITS):
    """{split: Collection} of VOC 2012 from a devkit folder (`data_dir`, VOC2012/ or
    VOCdevkit/VOC2012/ under it) or a prepared tfds data_dir (None: tfds' default)."""
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown VOC split {split!r}; expected one of {SPLITS} (the test split has no "
                             f"public labels).")
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"--data-dir {data_dir!r} is not a folder; give a VOC devkit folder "
                                    f"(JPEGImages/, Annotations/, ImageSets/Main/) or a tfds data_dir.")
        devkit = find_devkit(data_dir)
        if devkit is not None:
            return {split: devkit_split(devkit, split) for split in splits}
    else:
        import tensorflow_datasets as tfds

        data_dir = tfds.core.constants.DATA_DIR
    if _tfds_prepared(data_dir):
        return {split: tfds_split(data_dir, split) for split in splits}
    missing = [part for part in _DEVKIT_PARTS if not (pathlib.Path(data_dir) / part).is_dir()]
    raise FileNotFoundError(
        f"{data_dir!r} is neither a VOC devkit folder (missing {', '.join(missing)}) nor a tfds data_dir with "
        f"voc/2012 prepared. Nothing is downloaded unasked: unpack VOCtrainval_11-May-2012.tar there, or "
        f"prepare tfds' voc/2012.")
