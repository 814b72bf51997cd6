"""Correspondence analysis (Zeiler & Fergus 2013, §4.3 of the published paper; Table 1 of
the arXiv text): does the model relate the same part of different objects of one class?
Beyond the seeds: kzoo gives the measure and the table, not the paper's dog images.

The same part (e.g. the left eye) is occluded in each of N images of one class; at layer l,
eps_i = x_i - x~_i is the change of image i's (flattened) features, and

    Delta_l = sum over i != j of H(sign(eps_i), sign(eps_j))

with H the Hamming distance (the number of entries whose signs differ; signs are -1, 0,
+1). A lower Delta means the occlusion changes the features the same way in every image:
a consistent correspondence. The control occludes random boxes of the same sizes. The
table also gives Delta / (N (N - 1) D), D the layer's size: the mean fraction of entries
whose signs differ between two images, comparable across layers and image counts.

Conventions: boxes are given as (x1, y1, x2, y2) in pixels of the stored image (as
`kzoo.data.boxes`' files) and mapped to the centre view the model reads
(`kzoo.preprocessing.view_box`), then rounded to whole pixels (rows round(y1)..round(y2) - 1)
and clipped to the view; the occluder fills them with 0 in model-input space (the mean,
as `occlusion`'s grey square). A random box has a part's size in each image, at a
position drawn uniformly among those inside the view. Changes within `tolerance` times
the image's largest feature at that layer count as 0, so that float round-off between two
forward passes is no sign. Default layers, by family: layer 5 is the last rectified
feature map (`relu5`; OverFeat accurate `relu6`; ResNets the last block,
`conv5_blockN_out`, CIFAR nets `conv4_blockN_out`), layer 7 the last hidden vector
(`relu7`; OverFeat accurate `relu8`; ResNets `avg_pool`).
"""

import json
import os
import pathlib

import numpy as np

import keras

from kzoo import preprocessing
from kzoo.data.boxes import csv_box_rows
from kzoo.utils.files import atomic_write
from kzoo.visualize.common import figure, get_layer, hidden_layer, last_feature_layer, save_figure

ALL = "*"  # a box file's image column: every image


def default_layers(model):
    """ZFNet's layers 5 and 7 by family (module docstring)."""
    return [last_feature_layer(model), hidden_layer(model)]


def read_parts(path):
    """[(image, part, (x1, y1, x2, y2))] from a CSV with the header image,x1,y1,x2,y2[,part]
    (image: a file name or stem, a validation image's index, or * for every image; part:
    default "part")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"box file {path!r} does not exist; give a CSV with the header "
                                f"image,x1,y1,x2,y2,part (pixels of the stored images).")
    rows = [(row["image"].strip(), (row.get("part") or "part").strip(), box)
            for _, row, box in csv_box_rows(path, header="image,x1,y1,x2,y2,part")]
    if not rows:
        raise ValueError(f"box file {path!r} holds no boxes.")
    return rows


def pixel_box(box, height, width, where="box"):
    """A view box (x1, y1, x2, y2) in float pixels -> whole pixels [x1, x2) x [y1, y2), rounded
    and clipped to the height x width view; a box that keeps no pixel is an error."""
    x1, y1, x2, y2 = (int(np.floor(v + 0.5)) for v in box)  # round half up: 2.5 -> 3 on both edges
    x1, x2, y1, y2 = max(x1, 0), min(x2, width), max(y1, 0), min(y2, height)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where} {[round(float(v), 2) for v in box]} leaves no pixel of the {height}x{width} view "
                         f"the model reads (after the resize and centre crop); move it inside the centre.")
    return np.array([x1, y1, x2, y2], np.int64)


def part_boxes(rows, keys, shapes, p, size):
    """{part: (N, 4) whole-pixel view boxes} from `read_parts` rows. keys: per image the names a
    row may use (e.g. {"cat1", "cat1.jpg"}); shapes: the stored images' (H, W); p: the
    model's Preprocess; size: the view's side. Every part needs a box for every image."""
    parts = {}
    for name, part, box in rows:
        hits = [i for i, k in enumerate(keys) if name == ALL or name in k]
        for i in hits:
            if i in parts.setdefault(part, {}):
                raise ValueError(f"part {part!r} has two boxes for image {sorted(keys[i])[0]!r}; give one.")
            view = preprocessing.view_box(box, *shapes[i], p)
            parts[part][i] = pixel_box(view, size, size, f"part {part!r} of image {sorted(keys[i])[0]!r}: box")
    if not parts or not any(parts.values()):
        shown = ", ".join(sorted(keys[0]))
        raise ValueError(f"no row of the box file names one of the {len(keys)} images (e.g. {shown}); name them "
                         f"by file name or stem (validation images: by index), or * for every image.")
    for part, boxes in parts.items():
        missing = [sorted(keys[i])[0] for i in range(len(keys)) if i not in boxes]
        if missing:
            raise ValueError(f"part {part!r} has no box for image(s) {', '.join(missing[:5])}: give one per image "
                             f"(or a row with image *), so that every part is occluded in all {len(keys)} images.")
    return {part: np.stack([boxes[i] for i in range(len(keys))]) for part, boxes in parts.items()}


def occlude(images, boxes, fill=0.0):
    """Copies of `images` (N, H, W, C) with box i ((x1, y1, x2, y2), whole pixels) set to `fill`."""
    out = np.array(images, copy=True)
    for image, (x1, y1, x2, y2) in zip(out, np.asarray(boxes, np.int64)):
        image[y1:y2, x1:x2] = fill
    return out


def random_boxes(boxes, height, width, rng):
    """Boxes of the sizes of `boxes` (N, 4) at positions drawn uniformly inside the view."""
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.int64):
        h, w = y2 - y1, x2 - x1
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        out.append((left, top, left + w, top + h))
    return np.array(out, np.int64)


def signs(original, occluded, tolerance=1e-4):
    """sign(eps) (N, D) int8 of eps = original - occluded (N, D); |eps| within `tolerance`
    times each image's largest |original| entry counts as 0."""
    original, occluded = np.asarray(original, np.float64), np.asarray(occluded, np.float64)
    eps = original - occluded
    scale = np.abs(original).max(axis=1, keepdims=True)
    return np.where(np.abs(eps) <= tolerance * scale, 0, np.sign(eps)).astype(np.int8)


def hamming(s):
    """(N, N) Hamming distances between the rows of sign vectors `s` (N, D): D minus the
    entries equal, counted as the products of their one-hot codes (-1, 0, +1)."""
    s = np.asarray(s)
    onehot = np.concatenate([(s == v) for v in (-1, 0, 1)], axis=1).astype(np.float64)
    return (s.shape[1] - onehot @ onehot.T).round().astype(np.int64)


def delta(s):
    """Delta = sum over ordered pairs i != j of H(s_i, s_j) (the diagonal of `hamming` is 0)."""
    return int(hamming(s).sum())


def _features(model, layers, batch_size):
    outputs = [get_layer(model, name).output for name in layers]
    probe = keras.Model(model.inputs[0], [keras.ops.reshape(o, (-1, int(np.prod(o.shape[1:])))) for o in outputs])

    def run(images):
        parts = []
        for start in range(0, len(images), batch_size):
            out = probe(images[start : start + batch_size], training=False)
            parts.append([keras.ops.convert_to_numpy(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
        return [np.concatenate(p) for p in zip(*parts)]

    return run


def correspondence(model, images, parts, layers=None, draws=10, seed=0, fill=0.0, tolerance=1e-4, batch_size=32):
    """Table 1's measure for `images` (N, H, W, C), model-ready, of one class.

    parts: {part name: (N, 4) boxes (x1, y1, x2, y2), whole view pixels}; layers: default
    `default_layers` (5 and 7); draws: random-box controls per part (positions from `seed`).
    Returns {"layers", "features" ({layer: D}), "images" (N), "rows": [{"mask", "kind"
    ("part" or "random"), "delta" ({layer: Delta}, for random the mean over draws),
    "fraction" ({layer: Delta / (N (N - 1) D)}), for parts "pairs" ({layer: (N, N)
    Hamming}) and "boxes", for random "delta_std" and "fraction_std" (over the draws) and
    "draws"}]}.
    """
    images = np.asarray(images, np.float32)
    n = len(images)
    if n < 2:
        raise ValueError(f"correspondence compares images pairwise; give at least 2 images (got {n}).")
    layers = default_layers(model) if layers is None else list(layers)
    if draws < 1:
        raise ValueError(f"draws must be >= 1 (random-box controls per part); got {draws}.")
    run = _features(model, layers, batch_size)
    originals = run(images)
    sizes = {name: f.shape[1] for name, f in zip(layers, originals)}
    height, width = images.shape[1:3]
    rng = np.random.default_rng(seed)

    def measure(boxes):
        occluded = run(occlude(images, boxes, fill))
        return {name: hamming(signs(o, c, tolerance)) for name, o, c in zip(layers, originals, occluded)}

    pairs_total = n * (n - 1)
    rows = []
    for part, boxes in parts.items():
        boxes = np.asarray(boxes, np.int64)
        if boxes.shape != (n, 4):
            raise ValueError(f"part {part!r}: {boxes.shape[0]} boxes for {n} images; give one per image.")
        pairs = measure(boxes)
        rows.append({"mask": part, "kind": "part", "boxes": boxes.tolist(),
                     "delta": {l: int(pairs[l].sum()) for l in layers},
                     "fraction": {l: float(pairs[l].sum() / (pairs_total * sizes[l])) for l in layers},
                     "pairs": {l: pairs[l].tolist() for l in layers}})
    for part, boxes in parts.items():
        draws_pairs = [measure(random_boxes(boxes, height, width, rng)) for _ in range(draws)]
        totals = np.array([[pairs[l].sum() for l in layers] for pairs in draws_pairs], np.float64)  # (draws, layers)
        mean, std = totals.mean(axis=0), totals.std(axis=0)
        per_entry = np.array([pairs_total * sizes[l] for l in layers], np.float64)
        rows.append({"mask": f"random ({part}'s size)", "kind": "random", "draws": draws,
                     "delta": dict(zip(layers, mean.tolist())), "delta_std": dict(zip(layers, std.tolist())),
                     "fraction": dict(zip(layers, (mean / per_entry).tolist())),
                     "fraction_std": dict(zip(layers, (std / per_entry).tolist()))})
    return {"layers": layers, "features": sizes, "images": n, "tolerance": tolerance, "fill": fill, "seed": seed,
            "rows": rows}


def table_markdown(result, title=None):
    """Table 1 as markdown: a row per mask, Delta and Delta / (N (N - 1) D) per layer (random
    rows: mean ± std over the draws)."""
    layers, n = result["layers"], result["images"]
    head = f"Correspondence (ZFNet §4.3, arXiv Table 1) over {n} images; lower = more consistent."
    lines = ([f"### {title}", ""] if title else []) + [
             head, "", "| mask | " + " | ".join(f"{l} Δ | {l} Δ/(N(N-1)D)" for l in layers) + " |",
             "|---|" + "---|---|" * len(layers)]
    for row in result["rows"]:
        cells = []
        for l in layers:
            if row["kind"] == "random":
                cells += [f"{row['delta'][l]:.1f} ± {row['delta_std'][l]:.1f}",
                          f"{row['fraction'][l]:.4f} ± {row['fraction_std'][l]:.4f}"]
            else:
                cells += [f"{row['delta'][l]}", f"{row['fraction'][l]:.4f}"]
        lines.append(f"| {row['mask']} | " + " | ".join(cells) + " |")
    sizes = ", ".join(f"{l}: D = {d}" for l, d in result["features"].items())
    lines += ["", f"N = {n} images; {sizes}; random rows: mean ± std over the draws."]
    return "\n".join(lines) + "\n"


def masks_plot(pictures, parts, fill, names=None):
    """The images with each part occluded (a row per part), as the model reads them."""
    fig, axes = figure(len(parts), len(pictures), size=1.6)
    for row, (part, boxes) in enumerate(parts.items()):
        shown = occlude(pictures, boxes, fill)
        for col, picture in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(np.clip(picture, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(part, fontsize=8)
            if row == 0 and names is not None:
                ax.set_title(str(names[col]), fontsize=7)
    fig.tight_layout()
    return fig


def write_outputs(result, folder, pictures=None, parts=None, fill=None, names=None, title=None, **extra):
    """correspondence.md (`table_markdown` under `title`), correspondence.json (the result and
    `extra`) and, with `pictures`, correspondence.png (the occluded images) in `folder`;
    returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "correspondence.md"), os.path.join(folder, "correspondence.json")]
    with atomic_write(paths[0]) as f:
        f.write(table_markdown(result, title))
    with atomic_write(paths[1]) as f:
        json.dump({**extra, "image_names": names, **result}, f, indent=1)
    if pictures is not None:
        paths.append(save_figure(masks_plot(pictures, parts, fill, names), os.path.join(folder, "correspondence.png")))
    return paths


def check_table(model, boxes, layers, images, label):
    """The command's settings, checked before any image is read: `layers` of `model`, a box
    file (`boxes`), and `label` only for dataset images. Returns the box file's rows."""
    for name in layers or []:
        get_layer(model, name)
    if not boxes:
        raise ValueError("correspondence needs --boxes FILE: a CSV with the header image,x1,y1,x2,y2,part giving, "
                         "for each image (file name or stem; validation images by index; * for all), the box of "
                         "each part to occlude, in pixels of the stored image.")
    rows = read_parts(boxes)
    if images and label is not None:
        raise ValueError("--label picks validation images of one class; --images are taken as given (all of "
                         "one class): drop --label, or drop --images.")
    return rows


def table_and_images(trained, raw, labels, files, rows, out, layers=None, draws=10, seed=0):
    """`python -m kzoo.visualize correspondence`: Table 1 for the raw images `raw` (`files`
    their paths, or None for validation images; `labels` their classes or None) with the part
    boxes `rows` (check_table): printed, and written (markdown, json, the occluded images) to
    `out`; returns the paths written."""
    model = trained.model
    names = [pathlib.Path(f).name for f in files] if files else [str(i) for i in range(len(raw))]
    keys = [{pathlib.Path(f).name, pathlib.Path(f).stem} for f in files] if files else [{str(i)} for i in
                                                                                         range(len(raw))]
    parts = part_boxes(rows, keys, [im.shape[:2] for im in raw], trained.preprocessing, trained.input_size)
    images, pictures = trained.preprocess(raw), trained.pictures(raw)
    result = correspondence(model, images, parts, layers=layers, draws=draws, seed=seed)
    label = None if labels is None else trained.class_names[int(labels[0])]
    title = model.name + (f", class {label}" if label is not None else "")
    print(table_markdown(result, title))
    fill = np.clip(np.asarray(trained.mean, np.float32).reshape(-1, 3).mean(0) / 255.0, 0, 1)
    return write_outputs(result, out, pictures, parts, fill, names, title, model=model.name, origin=trained.origin,
                         **({"class": label} if label is not None else {}))