"""Feature invariance (Zeiler & Fergus 2013, §4.2 of the published paper; Fig. 5 of the
arXiv text): how far a layer's features move as an image is translated, scaled or rotated,
and what happens to the probability of its class. Beyond the seeds: the paper's figure,
not its numbers, is what kzoo reproduces.

For each image x and each transform T_v of a sweep, the measures are the Euclidean
distance ||f_l(x) - f_l(T_v x)|| between the flattened outputs of layer l (by default
layer 1, layer 7 and the output: `default_layers`) and p(class | T_v x).

Transforms act on the model-ready input (the centre view with the mean removed, as
`kzoo.load` prepares it), so nothing of the preprocessing is re-derived here. Conventions
(pixel centres at integer coordinates, c = ((H - 1) / 2, (W - 1) / 2) the image centre):

- translate v: vertical, by v pixels, positive moves the content down; the rows it leaves
  are 0 (the mean: no signal). Integer v copies pixels exactly.
- scale v: about the centre, output(p) = input(c + (p - c) / v); v > 1 enlarges (zooms in,
  the paper's 1 to 1.8), v < 1 shrinks and fills the border with 0.
- rotate v: about the centre by v degrees, counter-clockwise as displayed (90 is
  `np.rot90` on a square image); corners from outside the image are 0.

Non-integer positions are read with bilinear interpolation; outside the image counts as 0
(bilinear across the border).
"""

import json
import os

import numpy as np

import keras

from kzoo.utils.files import atomic_write
from kzoo.visualize.common import (feature_layers, figure, get_layer, grid, hidden_layer, save_figure,
                                   stage_layers)
from kzoo.visualize.occlusion import is_probability

TRANSFORMS = ("translate", "scale", "rotate")
UNITS = {"translate": "vertical shift (pixels, + is down)", "scale": "scale factor",
         "rotate": "rotation (degrees, counter-clockwise)"}
PAPER_SIZE = 224  # §4.2's sweeps are for 224px inputs: translation -60..60 pixels


def default_values(transform, size):
    """The paper's sweep (Fig. 5) for a `size`px input: translation -60..60 px in steps of 10
    at 224px (scaled with the input: 13 shifts), scale 1.0..1.8 in steps of 0.1, rotation
    0..360 degrees in steps of 15."""
    if transform == "translate":
        step = max(1, round(10 * size / PAPER_SIZE))
        return [float(k * step) for k in range(-6, 7)]
    if transform == "scale":
        return [round(1.0 + 0.1 * k, 1) for k in range(9)]
    if transform == "rotate":
        return [float(a) for a in range(0, 361, 15)]
    raise ValueError(f"unknown transform {transform!r}; choose from {', '.join(TRANSFORMS)}.")


def default_layers(model):
    """ZFNet's layer 1, layer 7 and output by family: AlexNet/ZFNet/OverFeat `relu1`, the last
    hidden FC ReLU (`relu7`; OverFeat accurate `relu8`), the classifier (`fc8`/`fc9`);
    ResNets `conv1_relu` (the stem), `avg_pool` (the pooled features: the last hidden
    representation, as relu7 is for ZFNet), `fc`. Other models: their first rectified
    feature map, last hidden vector and last layer."""
    stages = stage_layers(model)
    if stages:
        first = stages[0]
    else:
        relus = [n for n in feature_layers(model) if isinstance(model.get_layer(n), keras.layers.ReLU)]
        if not relus:
            raise ValueError(f"{model.name!r} has no ReLU feature-map layer to stand for layer 1; name the "
                             f"layers (--layers NAME ...).")
        first = relus[0]
    return [first, hidden_layer(model), model.layers[-1].name]


def _sample(images, ys, xs, fill=0.0):
    """Bilinear samples of `images` (N, H, W, C) at float positions (ys, xs) (arrays of one
    shape), pixel centres at integers; positions outside read `fill`."""
    h, w = images.shape[1:3]
    ys, xs = (np.where(np.abs(v - np.round(v)) < 1e-9, np.round(v), v) for v in (ys, xs))  # cos(90) != 0
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = ys - y0, xs - x0
    out = np.zeros(images.shape[:1] + ys.shape + images.shape[3:], np.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            y, x = y0 + dy, x0 + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            values = images[:, np.clip(y, 0, h - 1).astype(int), np.clip(x, 0, w - 1).astype(int)]
            weight = np.where(inside, wy * wx, 0.0)
            out += weight[None, ..., None] * values + (np.where(inside, 0.0, wy * wx) * fill)[None, ..., None]
    return out.astype(images.dtype)


def transform(images, kind, value, fill=0.0):
    """`images` (N, H, W, C) or one (H, W, C) under transform `kind` by `value` (conventions in
    the module docstring); the same shape and dtype."""
    images = np.asarray(images)
    single = images.ndim == 3
    batch = images[None] if single else images
    h, w = batch.shape[1:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    if kind == "translate":
        sy, sx = y - value, x
    elif kind == "scale":
        if not value > 0:
            raise ValueError(f"scale factor {value} must be > 0.")
        sy, sx = cy + (y - cy) / value, cx + (x - cx) / value
    elif kind == "rotate":
        t = np.deg2rad(value)
        u, v = x - cx, y - cy  # the inverse map: the output rotated back by -value
        sx, sy = cx + u * np.cos(t) - v * np.sin(t), cy + u * np.sin(t) + v * np.cos(t)
    else:
        raise ValueError(f"unknown transform {kind!r}; choose from {', '.join(TRANSFORMS)}.")
    out = _sample(batch, sy, sx, fill)
    return out[0] if single else out


def _probe(model, layers):
    """A model from `model`'s input to the flattened outputs of `layers` and its classifier."""
    outputs = [get_layer(model, name).output for name in layers]
    outputs = [keras.ops.reshape(o, (-1, int(np.prod(o.shape[1:])))) for o in outputs]
    return keras.Model(model.inputs[0], outputs + [model.outputs[0]])


def _run(probe, batch, batch_size):
    parts = []
    for start in range(0, len(batch), batch_size):
        out = probe(batch[start : start + batch_size], training=False)
        parts.append([keras.ops.convert_to_numpy(o) for o in out])
    return [np.concatenate(p) for p in zip(*parts)]


def invariance(model, images, transforms=TRANSFORMS, values=None, layers=None, labels=None, batch_size=32):
    """ZFNet Fig. 5's measures for `images` (N, H, W, C), model-ready (`kzoo.load(...).preprocess`).

    transforms: names among TRANSFORMS; values: {transform: sweep} (default
    `default_values`, for the model's input size); layers: names whose distances are
    measured (default `default_layers`: layer 1, layer 7, output); labels: each image's
    correct class, or None: the class the model predicts on the original image.
    The model's output is read as probabilities; outputs that are no distribution on the
    originals (logits) get a softmax.

    Returns {"layers", "labels", "label_source" ("given" or "predicted"), "transforms":
    {name: {"values", "unit", "distance": {layer: (N, V) array}, "probability": (N, V)}}}:
    row i is image i, column j the sweep's j-th value.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.inputs[0].shape[1:]):
        raise ValueError(f"images of shape {images.shape} do not fit the model's input "
                         f"{tuple(model.inputs[0].shape[1:])}; pass a batch prepared for it.")
    layers = default_layers(model) if layers is None else list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one layer, or pass None for layers 1, 7 and the output.")
    probe = _probe(model, layers)
    originals = _run(probe, images, batch_size)
    logits = not is_probability(originals[-1])
    to_prob = (lambda o: keras.ops.convert_to_numpy(keras.ops.softmax(o, axis=-1))) if logits else (lambda o: o)
    classes = originals[-1].shape[-1]
    if labels is None:
        labels, source = [int(i) for i in np.argmax(originals[-1], axis=-1)], "predicted"
    else:
        labels, source = [int(i) for i in labels], "given"
        if len(labels) != len(images) or not all(0 <= i < classes for i in labels):
            raise ValueError(f"labels {labels}: give one class in 0..{classes - 1} per image ({len(images)}).")
    values = dict(values or {})
    results = {}
    rows = np.arange(len(images))
    for kind in transforms:
        sweep = [float(v) for v in values.get(kind) or default_values(kind, images.shape[1])]
        distance = {name: np.zeros((len(images), len(sweep))) for name in layers}
        prob = np.zeros((len(images), len(sweep)))
        for j, value in enumerate(sweep):  # one value at a time: layer 1's maps of a sweep need not fit in memory
            out = _run(probe, transform(images, kind, value), batch_size)
            for k, name in enumerate(layers):
                distance[name][:, j] = np.linalg.norm(out[k].astype(np.float64) - originals[k], axis=-1)
            prob[:, j] = to_prob(out[-1])[rows, labels]
        results[kind] = {"values": sweep, "unit": UNITS[kind], "distance": distance, "probability": prob}
    return {"layers": layers, "labels": labels, "label_source": source, "transforms": results}


def to_json(result, **extra):
    """`invariance`'s result with lists for arrays, and `extra` keys (model, images)."""
    transforms = {kind: {"values": r["values"], "unit": r["unit"],
                         "distance": {k: v.tolist() for k, v in r["distance"].items()},
                         "probability": r["probability"].tolist()} for kind, r in result["transforms"].items()}
    return {**extra, "layers": result["layers"], "labels": result["labels"], "label_source": result["label_source"],
            "transforms": transforms}


def write_json(result, path, **extra):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        json.dump(to_json(result, **extra), f, indent=1)
    return path


def invariance_plot(result, pictures=None, names=None, fill=None, examples=5):
    """Fig. 5's grid: a row per transform; columns: (with `pictures`, RGB in [0, 1]) the first
    picture at `examples` values of the sweep, then the distance at each layer, then the
    probability of the class; one line per image (`names` in the legend). `fill`: the
    colour the transform leaves (RGB in [0, 1], the mean)."""
    kinds = list(result["transforms"])
    layers = result["layers"]
    first = 1 if pictures is not None else 0
    fig, axes = figure(len(kinds), first + len(layers) + 1, size=3.0)
    which = "true class" if result["label_source"] == "given" else "class predicted on the original"
    for row, kind in enumerate(kinds):
        r = result["transforms"][kind]
        sweep = np.array(r["values"])
        if pictures is not None:
            picks = np.unique(np.linspace(0, len(sweep) - 1, min(examples, len(sweep))).round().astype(int))
            shown = [np.clip(transform(np.asarray(pictures[0], np.float64) - fill, kind, sweep[j]) + fill, 0, 1)
                     for j in picks] if fill is not None else [
                np.clip(transform(pictures[0], kind, sweep[j]), 0, 1) for j in picks]
            ax = axes[row, 0]
            ax.imshow(grid(shown, len(shown), pad=2))
            ax.set_title(f"{kind}: " + ", ".join(f"{sweep[j]:g}" for j in picks), fontsize=8)
            ax.set_axis_off()
        panels = [(r["distance"][name], f"{name}: Euclidean distance") for name in layers]
        panels.append((r["probability"], f"p({which})"))
        for col, (curves, title) in enumerate(panels, start=first):
            ax = axes[row, col]
            for i, curve in enumerate(curves):
                label = names[i] if names is not None else f"image {i}"
                ax.plot(sweep, curve, marker=".", markersize=3, linewidth=1, label=label)
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(r["unit"], fontsize=7)
            ax.tick_params(labelsize=6)
            if col == len(panels) - 1 + first:
                ax.set_ylim(-0.02, 1.02)
        if row == 0:
            axes[0, first].legend(fontsize=6)
    fig.tight_layout()
    return fig


def invariance_figure(result, path, pictures=None, names=None, fill=None):
    """`invariance_plot` written at `path`; returns `path`."""
    return save_figure(invariance_plot(result, pictures, names, fill), path)


def check_sweep(model, transforms, values, layers):
    """The command's settings, checked before any image is read: `layers` of `model`, and a
    value list only for a transform that is swept. Returns the transforms (default: all three)."""
    for name in layers or []:
        get_layer(model, name)  # an unknown layer is named before any image is read
    transforms = transforms or TRANSFORMS
    unused = [f"--{flag}" for flag, kind in (("shifts", "translate"), ("scales", "scale"), ("angles", "rotate"))
              if values.get(kind) and kind not in transforms]
    if unused:
        raise ValueError(f"{', '.join(unused)} sweep{'s' if len(unused) == 1 else ''} a transform that --transform "
                         f"leaves out; add it to --transform ({' '.join(transforms)}), or drop {', '.join(unused)}.")
    return transforms


def figure_and_numbers(trained, images, pictures, labels, names, out, transforms, values, layers=None):
    """`python -m kzoo.visualize invariance`: Fig. 5 and its numbers for `images` (model-ready
    views, `pictures` the same as pictures, `labels` the true classes or None, `names` to show)
    of `trained` (kzoo.load) under `transforms` swept over `values`; returns the paths written."""
    model = trained.model
    result = invariance(model, images, transforms=transforms, values=values, layers=layers, labels=labels)
    fill = np.clip(np.asarray(trained.mean, np.float32).reshape(-1, 3).mean(0) / 255.0, 0, 1)  # the mean colour
    shown = [f"{name} ({trained.class_names[label]})" for name, label in zip(names, result["labels"])]
    return [invariance_figure(result, os.path.join(out, "invariance.png"), pictures, shown, fill),
            write_json(result, os.path.join(out, "invariance.json"), model=model.name, origin=trained.origin,
                       images=names)]