"""Bounding boxes for localization and detection: the built-in shapes and box files, no TensorFlow.

Boxes are (x1, y1, x2, y2) in pixels of the stored image. A box file is either a
CSV with the header `image,x1,y1,x2,y2` (image: a file name, matched by its stem)
or a folder of ILSVRC / Pascal VOC XML annotations (`<filename>`, `<object><bndbox>`);
an image with several objects keeps its largest, as in single-object localization. The
boxed examples of a source (tf.data) are kzoo.data.sources'.
"""

import csv
import math
import os
import pathlib
import xml.etree.ElementTree as ET

import numpy as np

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


def xml_files(folder):
    """The .xml annotations under `folder`, sorted; a folder without any is refused."""
    files = sorted(pathlib.Path(folder).rglob("*.xml"))
    if not files:
        raise ValueError(f"box folder {str(folder)!r} holds no .xml annotations (ILSVRC / Pascal VOC format).")
    return files


def read_xml(path, named=True, boxes=True):
    """(image file name, [(class name, box, difficult)]) of one ILSVRC / Pascal VOC XML
    annotation, the one reader of kzoo's XML boxes. The file name is <filename>, or the
    annotation's own stem. `named`: an <object> without a <name> is refused (else its name
    is ""); `boxes`: each <bndbox> is read and checked (`checked_box`; None where there is
    none), else every box is None."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{path}: not a readable XML annotation ({err}).") from None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if named and not name:
            raise ValueError(f"{path}: an <object> has no <name>.")
        bb = obj.find("bndbox") if boxes else None
        keys = ("xmin", "ymin", "xmax", "ymax")
        box = None if bb is None else checked_box({k: bb.findtext(k) for k in keys}, keys, f"{path}: <bndbox>")
        objects.append((name, box, (obj.findtext("difficult") or "0").strip() == "1"))
    return root.findtext("filename") or pathlib.Path(path).stem, objects


def _xml_boxes(folder):
    boxes = {}
    for path in xml_files(folder):
        name, objects = read_xml(path, named=False)
        for _, box, _ in objects:
            if box is not None:
                _add(boxes, name, list(box), str(path))
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
