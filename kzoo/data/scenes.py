"""Scenes for detection (OverFeat §4.6): images holding any number of boxed objects of
several classes, some holding none. Boxes are (x1, y1, x2, y2) in pixels.

Built in: generated noise scenes with coloured squares (the colour is the class,
as the localization shapes). From disk: a folder of images (any depth) and a boxes
file, a CSV `image,x1,y1,x2,y2,class[,difficult]` (one row per object, `image` matched
by file name without extension) or a folder of VOC/ILSVRC XML annotations (several
`<object>`s each). Images with no box are scenes without objects.
"""

import dataclasses
import os
import pathlib

import numpy as np

from kzoo.data.boxes import SHAPE_COLOURS, csv_box_rows, read_xml, xml_files
from kzoo.data import images as image_files

@dataclasses.dataclass
class Scenes:
    """`images[i]`: an array or a file path; `objects[i]`: [(box, label, difficult)]."""
    name: str
    images: list
    objects: list
    class_names: list

    def read(self, i):
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return item
        return image_files.read(item)


def generated_scenes(n, size=192, seed=0, empty=0.15, most=3, sides=(0.15, 0.25), distractors=2, bars=2):
    """`n` noise images of `size` px, each with 1..`most` non-overlapping coloured squares
    (the colour channel is the class) of sides in `sides` x size, a fraction `empty` with
    none, and clutter that is no object: up to `distractors` grey squares and up to `bars`
    thin bars in the classes' colours (only a background class learns that a red bar is no
    red square). Returns (images, objects)."""
    rng = np.random.default_rng(seed)
    images, objects = [], []
    for _ in range(n):
        image = rng.standard_normal((size, size, 3), dtype=np.float32) * 20 + 100
        count = 0 if rng.random() < empty else int(rng.integers(1, most + 1))
        wanted = [int(rng.integers(0, len(SHAPE_COLOURS))) for _ in range(count)]
        wanted += ["grey"] * int(rng.integers(0, distractors + 1)) + ["bar"] * int(rng.integers(0, bars + 1))
        boxes, found = [], []
        for label in wanted:
            for _ in range(50):  # tries: shapes must not overlap
                if label == "bar":
                    w, h = round(size * rng.uniform(0.03, 0.05)), round(size * rng.uniform(0.3, 0.45))
                    w, h = (w, h) if rng.random() < 0.5 else (h, w)
                else:
                    w = h = int(rng.integers(round(size * sides[0]), round(size * sides[1]) + 1))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                box = (x, y, x + w, y + h)
                if all(box[0] >= b[2] or b[0] >= box[2] or box[1] >= b[3] or b[1] >= box[3] for b in boxes):
                    break
            else:
                continue  # no room left
            boxes.append(box)
            if label == "grey":
                image[y : y + h, x : x + w] += 100
            elif label == "bar":
                image[y : y + h, x : x + w, int(rng.integers(0, len(SHAPE_COLOURS)))] += 150
            else:
                image[y : y + h, x : x + w, label] += 150
                found.append((tuple(float(v) for v in box), label, False))
        images.append(np.clip(image, 0, 255).astype("uint8"))
        objects.append(found)
    return images, objects


def builtin_scenes(train_size=300, val_size=100, size=192, seed=0):
    """{"train", "val"}: generated scenes (3 classes: red, green, blue squares; grey squares and
    coloured bars as clutter)."""
    out = {}
    for split, n, split_seed in (("train", train_size, seed), ("val", val_size, seed + 100)):
        images, objects = generated_scenes(n, size, split_seed)
        out[split] = Scenes("scenes", images, objects, list(SHAPE_COLOURS))
    return out


def _csv_objects(path):
    found = {}
    for where, row, box in csv_box_rows(path, ("class",), "image,x1,y1,x2,y2,class (and optionally difficult)"):
        name = (row["class"] or "").strip()
        if not name:
            raise ValueError(f"{where}: the class is empty.")
        difficult = (row.get("difficult") or "0").strip() in ("1", "true", "True")
        _add(found, row["image"], (box, name, difficult), where)
    return found


def _xml_objects(folder):
    found = {}
    for path in xml_files(folder):
        name, objects = read_xml(path)
        found.setdefault(pathlib.Path(name).stem, [])  # an annotation without objects: an empty scene
        for label, box, difficult in objects:
            if box is None:
                raise ValueError(f"{path}: object {label!r} has no <bndbox>.")
            _add(found, name, (box, label, difficult), str(path))
    return found


def _add(found, image, obj, where):
    box = obj[0]
    if not box[2] > box[0] or not box[3] > box[1]:
        raise ValueError(f"{where}: empty box {list(box)} (need x2 > x1 and y2 > y1).")
    found.setdefault(pathlib.Path(image).stem, []).append(obj)


def read_scene_boxes(path):
    """{image file stem: [(box, class name, difficult)]} from a CSV or a folder of XML files."""
    if os.path.isdir(path):
        return _xml_objects(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--boxes {path!r} does not exist; give a CSV (image,x1,y1,x2,y2,class) or a "
                                f"folder of VOC/ILSVRC XML annotations.")
    return _csv_objects(path)


def check_splits(data, fix):
    """Refuse {"train", "val"} scenes that cannot train or score a detector: a split without
    a (non-difficult) object, or a class with objects only in validation."""
    counts = {}
    for split, part in data.items():
        counts[split] = np.zeros(len(part.class_names), int)
        for objects in part.objects:
            for _, label, difficult in objects:
                counts[split][label] += not difficult
    for split in ("train", "val"):
        if not counts[split].sum():
            raise ValueError(f"the {split} scenes hold no (non-difficult) object, so the detector can"
                             f"{'not learn' if split == 'train' else 'not be scored'}; give more images, or "
                             f"another {fix}.")
    missing = [name for name, n, m in zip(data["train"].class_names, counts["train"], counts["val"]) if m and not n]
    if missing:
        raise ValueError(f"class{'es' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                         f"{'have' if len(missing) > 1 else 'has'} objects in the validation scenes only, so the "
                         f"detector never learns {'them' if len(missing) > 1 else 'it'}; give more images, or "
                         f"another {fix}.")


def folder_scenes(data_dir, boxes, val_fraction=0.2, seed=0):
    """{"train", "val"}: every image under `data_dir` with its objects from `boxes`
    (read_scene_boxes), split at random (`seed`) with `val_fraction` for validation."""
    root = pathlib.Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir!r} is not a folder of images.")
    files = image_files.found(root)
    if len(files) < 2:
        raise ValueError(f"--data-dir {data_dir!r} holds {len(files)} image(s); detection needs images to train "
                         f"on and to validate on.")
    by_stem = {}
    for f in files:
        if f.stem in by_stem:
            raise ValueError(f"boxes are matched by file name, and two images are named {f.stem!r} "
                             f"({by_stem[f.stem]}, {f}); give the images unique names.")
        by_stem[f.stem] = f
    found = read_scene_boxes(boxes)
    unknown = sorted(set(found) - set(by_stem))
    if unknown:
        raise ValueError(f"--boxes {boxes!r} names {len(unknown)} image(s) not under {data_dir!r} (e.g. "
                         f"{unknown[0]!r}); boxes for another folder would be silently lost.")
    class_names = sorted({name for objects in found.values() for _, name, _ in objects})
    if not class_names:
        raise ValueError(f"--boxes {boxes!r} holds no object; detection needs boxed objects to learn from.")
    objects = [[(box, class_names.index(name), difficult) for box, name, difficult in found.get(f.stem, [])]
               for f in files]
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = max(1, round(len(files) * val_fraction))
    out = {}
    for split, picks in (("val", np.sort(order[:n_val])), ("train", np.sort(order[n_val:]))):
        out[split] = Scenes(root.name, [str(files[i]) for i in picks], [objects[i] for i in picks], class_names)
    return out
