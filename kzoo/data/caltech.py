"""Caltech-101 / Caltech-256 for ZFNet's transfer protocol (§5.2).

The images come from the original folder layout (`101_ObjectCategories/<class>/*.jpg`,
`256_ObjectCategories/<nnn.class>/*.jpg`) or from a prepared tfds `caltech101`
(all its images: its fixed train/test split is not the protocol). Each fold draws,
per class, `per_class` training images and up to `test_max` of the rest for testing.
`exclude` leaves out listed images of the folder layout (those also in ImageNet, §5.2:
`python -m kzoo.data.overlap` lists them).
"""

import dataclasses
import os
import pathlib

import numpy as np

from kzoo.data import images, overlap
from kzoo.data.images import class_folders

DATASETS = {
    # per-class training sizes (ZFNet Tables 3, 4), test images per class, background class;
    # paper: the tables' mean per-class accuracy (%, ± std over folds where SPEC.md gives one), per
    # (per_class, accuracy, std), for the §5.2 softmax on pretrained layers and the from-scratch baseline
    "caltech101": dict(folder="101_ObjectCategories", per_class=(15, 30), test_max=50,
                       background="BACKGROUND_Google", tfds_background="background_google", with_background=True,
                       paper=dict(table="Table 3", pretrained=((15, 83.8, 0.5), (30, 86.5, 0.5)),
                                  scratch=((15, 22.8, 1.5), (30, 46.5, 1.7)))),
    "caltech256": dict(folder="256_ObjectCategories", per_class=(15, 30, 45, 60), test_max=25,
                       background="257.clutter", tfds_background=None, with_background=False,
                       paper=dict(table="Table 4",
                                  pretrained=((15, 65.7, None), (30, 70.6, None), (45, 72.7, None), (60, 74.2, 0.3)),
                                  scratch=((15, 9.0, None), (30, 22.5, None), (45, 31.2, None), (60, 38.8, None)))),
}


@dataclasses.dataclass
class Collection:
    """All images of a dataset: `images[i]` is a file path or a function returning the array."""
    name: str
    images: list
    labels: np.ndarray
    class_names: list
    excluded: tuple = ()  # the images left out (relative paths, sorted): part of the features' cache key

    def read(self, i):
        item = self.images[i]
        return item() if callable(item) else images.read(item)


def _spec(name):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}.")
    return DATASETS[name]


def load_collection(name, data_dir, background=None, exclude=None):
    """`name`'s images under `data_dir` (the category folder, its parent, or a tfds data_dir).
    background: keep the background/clutter class (default: the paper's protocol).
    exclude: images to leave out, as paths relative to the category folder
    (`accordion/image_0001.jpg`), or a file listing them (`kzoo.data.overlap.read_list`:
    the overlap tool's --out, or one path a line); one that names no image is an error
    (a list made for another folder)."""
    spec = _spec(name)
    background = spec["with_background"] if background is None else background
    if data_dir is None or not os.path.isdir(data_dir):
        raise FileNotFoundError(f"--data-dir {data_dir!r} is not a folder; give the {spec['folder']} folder "
                                f"(or its parent){' or a tfds data_dir with caltech101 prepared' if name == 'caltech101' else ''}.")
    root = pathlib.Path(data_dir)
    folder = root / spec["folder"] if (root / spec["folder"]).is_dir() else root
    if name == "caltech101" and not (folder / spec["background"]).is_dir() and _has_tfds(root):
        if exclude is not None:
            # tfds keeps only each file's base name, and the overlap tool needs the folder anyway
            raise ValueError(f"--exclude needs the {spec['folder']} folder layout; {data_dir!r} is a tfds "
                             f"data_dir. Give the {spec['folder']} folder as --data-dir (the overlap list is "
                             f"made from it).")
        return tfds_collection(str(root), "caltech101", spec["tfds_background"], background)
    classes, files, labels, _ = class_folders(folder)
    excluded = ()
    if isinstance(exclude, (str, os.PathLike)):
        exclude = overlap.read_list(exclude)
    if exclude is not None:
        files, labels, excluded = _exclude(folder, files, labels, exclude, spec["folder"])
    if not background and spec["background"] in classes:
        drop = classes.index(spec["background"])
        files = [f for f, l in zip(files, labels) if l != drop]
        labels = [l - (l > drop) for l in labels if l != drop]
        classes = [c for c in classes if c != spec["background"]]
    return Collection(name, files, np.asarray(labels, int), classes, excluded)


def _exclude(folder, files, labels, exclude, folder_name):
    """files and labels without the images `exclude` names (relative to `folder`; a leading
    `folder_name/`, as a list made from the parent folder has, is dropped), and those names."""
    relative = {pathlib.Path(f).relative_to(folder).as_posix(): k for k, f in enumerate(files)}
    names = []
    for entry in exclude:
        entry = entry.strip().replace("\\", "/").removeprefix("./")
        names.append(entry.removeprefix(f"{folder_name}/") if entry not in relative else entry)
    unknown = [n for n in dict.fromkeys(names) if n not in relative]
    if unknown:
        listed = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"--exclude names {len(unknown)} image{'s' if len(unknown) > 1 else ''} not in "
                         f"{str(folder)!r}: {listed}; the list must name images of this folder, relative to it "
                         f"(e.g. {next(iter(relative))!r}): was it made for another folder?")
    drop = {relative[n] for n in names}
    keep = [k for k in range(len(files)) if k not in drop]
    return [files[k] for k in keep], [labels[k] for k in keep], tuple(sorted(set(names)))


def _has_tfds(root):
    return (root / "caltech101").is_dir()


def tfds_collection(data_dir, builder_name, background_name=None, background=True):
    """Every image of a prepared tfds dataset (all splits: the protocol draws its own)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(builder_name, data_dir=data_dir)
    names = list(builder.info.features["label"].names)
    images, labels = [], []
    for split in sorted(builder.info.splits):
        for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
            images.append(lambda image=example["image"]: image)
            labels.append(int(example["label"]))
    labels = np.asarray(labels)
    if not background and background_name in names:
        drop = names.index(background_name)
        keep = labels != drop
        images = [im for im, k in zip(images, keep) if k]
        labels = labels[keep] - (labels[keep] > drop)
        names.remove(background_name)
    return Collection(builder_name, images, labels, names)


def protocol_folds(labels, class_names, per_class, test_max, folds=5, seed=0):
    """[(train indices, test indices)] per fold: per class, `per_class` random training
    images and up to `test_max` (None: all) of the others for testing; fold k draws
    with seed (seed, k), so folds differ and are reproducible."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=len(class_names))
    short = [(class_names[c], n) for c, n in enumerate(counts) if n <= per_class]
    if short:
        listed = ", ".join(f"{name!r} ({n})" for name, n in short[:5])
        raise ValueError(f"--per-class {per_class} needs more than {per_class} images in every class (some left to "
                         f"test); these have fewer: {listed}{' ...' if len(short) > 5 else ''}.")
    out = []
    for fold in range(folds):
        rng = np.random.default_rng([seed, fold])
        train, test = [], []
        for c in range(len(class_names)):
            members = rng.permutation(np.flatnonzero(labels == c))
            train.append(members[:per_class])
            test.append(members[per_class : None if test_max is None else per_class + test_max])
        out.append((np.sort(np.concatenate(train)), np.sort(np.concatenate(test))))
    return out


def mean_per_class_accuracy(y_true, y_pred, classes):
    """The mean over classes of each class's accuracy (classes absent from y_true skipped)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    accs = [np.mean(y_pred[y_true == c] == c) for c in range(classes) if np.any(y_true == c)]
    return float(np.mean(accs))
