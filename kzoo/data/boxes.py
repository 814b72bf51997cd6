"""Bounding boxes for localization: the built-in shapes, box files, and boxed examples.

Boxes are (x1, y1, x2, y2) in pixels of the stored image. A box file is either a
CSV with the header `image,x1,y1,x2,y2` (image: a file name, matched by its stem)
or a folder of ILSVRC / Pascal VOC XML annotations (`<filename>`, `<object><bndbox>`);
an image with several objects keeps its largest, as in single-object localization.
"""

import csv
import math
import os
import pathlib
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow as tf

from kzoo.data import sources

SHAPE_COLOURS = ("red", "green", "blue")


def generated_shapes(n, size=96, seed=0):
    """`n` noise images (uint8, `size` px) with one coloured square each; the colour is the
    class. Returns (images, boxes, labels): a localization task with known boxes."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, size, size, 3), dtype=np.float32) * 20 + 100
    boxes, labels = np.zeros((n, 4), "float32"), rng.integers(0, len(SHAPE_COLOURS), n).astype("int32")
    for image, box, label in zip(images, boxes, labels):
        side = rng.integers(size * 3 // 10, size * 6 // 10)
        y, x = rng.integers(0, size - side, 2)
        image[y : y + side, x : x + side, label] += 150
        box[:] = (x, y, x + side, y + side)
    return np.clip(images, 0, 255).astype("uint8"), boxes, labels


def csv_box_rows(path, columns=(), header="image,x1,y1,x2,y2"):
    """(where, row, box) for each row of a box CSV, the one reader of kzoo's box files: the
    columns image,x1,y1,x2,y2 and `columns` must be in the header (the error shows `header`),
    coordinates must be numbers and boxes not empty. `where`: "path:line" for messages."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            yield from _rows(path, csv.DictReader(f), columns, header)
    except UnicodeDecodeError as err:
        raise ValueError(f"box file {path!r} is not UTF-8 text ({err.reason} at byte {err.start}); save it as "
                         f"UTF-8 CSV.") from None


def _rows(path, reader, columns, header):
    if not {"image", "x1", "y1", "x2", "y2", *columns} <= set(reader.fieldnames or ()):
        raise ValueError(f"box file {path!r} needs the header {header}; it has {reader.fieldnames}.")
    for line, row in enumerate(reader, start=2):
        yield f"{path}:{line}", row, checked_box(row, ("x1", "y1", "x2", "y2"), f"{path}:{line}")


def checked_box(values, keys, where):
    """(x1, y1, x2, y2) from `values[key]` for `keys`: finite pixel coordinates, not negative,
    a box that is not empty; a ValueError naming `where` otherwise."""
    try:
        box = tuple(float(values[k]) for k in keys)
    except (TypeError, ValueError, KeyError):
        raise ValueError(f"{where}: box coordinates must be numbers, got {[values.get(k) for k in keys]}.") from None
    if not all(math.isfinite(v) for v in box) or min(box) < 0:
        raise ValueError(f"{where}: box coordinates must be finite pixel positions >= 0 in the image, got "
                         f"{list(box)}.")
    if not box[2] > box[0] or not box[3] > box[1]:
        raise ValueError(f"{where}: empty box {list(box)} (need x2 > x1 and y2 > y1).")
    return box


def _csv_boxes(path):
    boxes = {}
    for where, row, box in csv_box_rows(path):
        _add(boxes, row["image"], list(box), where)
    return boxes


def _xml_boxes(folder):
    boxes = {}
    files = sorted(pathlib.Path(folder).rglob("*.xml"))
    if not files:
        raise ValueError(f"box folder {str(folder)!r} holds no .xml annotations (ILSVRC / Pascal VOC format).")
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise ValueError(f"{path}: not a readable XML annotation ({err}).") from None
        name = root.findtext("filename") or path.stem
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            if bb is None:
                continue
            keys = ("xmin", "ymin", "xmax", "ymax")
            box = list(checked_box({k: bb.findtext(k) for k in keys}, keys, f"{path}: <bndbox>"))
            _add(boxes, name, box, str(path))
    return boxes


def _add(boxes, image, box, where):
    if not box[2] > box[0] or not box[3] > box[1]:
        raise ValueError(f"{where}: empty box {box} (need x2 > x1 and y2 > y1).")
    stem = pathlib.Path(image).stem
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    if stem not in boxes or area(box) > area(boxes[stem]):
        boxes[stem] = box


def read_boxes(path):
    """{image file stem: (x1, y1, x2, y2)} from a CSV file or a folder of XML annotations."""
    if os.path.isdir(path):
        return _xml_boxes(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"box file {path!r} does not exist; give a CSV (image,x1,y1,x2,y2) "
                                f"or a folder of ILSVRC/VOC XML files.")
    return _csv_boxes(path)


def _decode_boxed(path, box, label):
    return sources.decode_file(path), box, label


def check_unique_names(files, boxes):
    """Boxes are matched by file stem: two boxed images with one stem would share a box."""
    stems = {}
    for f in files:
        stems.setdefault(pathlib.Path(f).stem, []).append(f)
    shared = [(s, fs) for s, fs in stems.items() if s in boxes and len(fs) > 1]
    if shared:
        stem, fs = shared[0]
        raise ValueError(f"boxes are matched by file name, and {len(fs)} images are named {stem!r} ({fs[0]}, "
                         f"{fs[1]}, ...); give the images unique names.")


def boxed_files(files, labels, boxes):
    """(image, box, label) dataset over the `files` that have a box in `boxes`."""
    keep = [(f, boxes[pathlib.Path(f).stem], l) for f, l in zip(files, labels) if pathlib.Path(f).stem in boxes]
    if not keep:
        return None
    f, b, l = zip(*keep)
    ds = tf.data.Dataset.from_tensor_slices((list(f), np.asarray(b, "float32"), np.asarray(l, "int32")))
    return ds.map(_decode_boxed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def boxed_examples(source, split, limit=None):
    """Lists (uint8 images, (N, 4) boxes, labels) of `source`'s boxed `split` ("train" or "val")."""
    if not source.boxed or source.boxed.get(split) is None:
        raise ValueError(f"dataset {source.name!r} has no boxes for its {split} images; give --boxes FILE "
                         f"(CSV image,x1,y1,x2,y2 or a folder of ILSVRC/VOC XML) or use --dataset shapes.")
    ds = source.boxed[split]
    with sources.naming_bad_images(source):
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
