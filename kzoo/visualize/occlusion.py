"""Occlusion sensitivity (Zeiler & Fergus 2013, §4.2 and Fig. 6).

A grey square is slid over the image; at each position we record (b) the total
activation of the feature map that is strongest on the unoccluded image, (d) the
probability of the correct class and (e) the most probable class. Where the square
hides what the model relies on, (b) and (d) drop and (e) changes. (c) is that map's
deconvnet projection from the unoccluded image (`strongest_map_projection`): what the
map responds to, so that (b)'s drop can be checked against it.

Positions are the square's top-left corners (y, x): `range(0, H - size + 1, stride)`,
plus `H - size` when the stride skips it, so the square always reaches the bottom and
right borders (likewise for x). Map entry [i, j] belongs to the square at
`positions[i, j]`.
"""

import numpy as np

import keras

from kzoo.visualize.common import figure, get_layer, last_feature_layer, save_figure, to_display
from kzoo.visualize.deconv import Deconvnet


def _starts(extent, size, stride):
    starts = list(range(0, extent - size + 1, stride))
    if starts[-1] != extent - size:  # stride skipped the border: add the last position
        starts.append(extent - size)
    return starts


def is_probability(outputs):
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-3))


def _checked(model, image, label, size, stride):
    """(image as float32, occluder size, stride, label) with their defaults; a ValueError
    naming what does not fit the model."""
    image = np.asarray(image, np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if image.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, image.shape)):
        raise ValueError(f"image shape {image.shape} != the model's input shape {expected}; pass one "
                         f"(H, W, C) image resized and preprocessed for the model (no batch axis).")
    height, width = image.shape[:2]
    size = max(1, min(height, width) // 6) if size is None else int(size)
    stride = max(1, size // 2) if stride is None else int(stride)
    if size < 1 or stride < 1:
        raise ValueError(f"occluder size ({size}) and stride ({stride}) must be >= 1.")
    if size > height or size > width:
        raise ValueError(f"occluder size {size} is larger than the image ({height}x{width}); "
                         f"pass size <= {min(height, width)}.")
    classes = model.outputs[0].shape[-1]
    if not 0 <= int(label) < classes:
        raise ValueError(f"label {label} is out of range: the model has {classes} classes (0..{classes - 1}).")
    return image, size, stride, int(label)


def _occluded(run, image, corners, size, grey, batch_size):
    """`run`'s (per-map totals, outputs) for `image` with a `size` square of `grey` at each of
    `corners` ((N, 2) top-left y, x), `batch_size` copies per pass."""
    totals, outputs = [], []
    for begin in range(0, len(corners), batch_size):
        chunk = corners[begin : begin + batch_size]
        batch = np.repeat(image[None], len(chunk), axis=0)
        for copy, (y, x) in zip(batch, chunk):
            copy[y : y + size, x : x + size] = grey
        chunk_totals, chunk_outputs = run(batch)
        totals.append(chunk_totals)
        outputs.append(chunk_outputs)
    return np.concatenate(totals), np.concatenate(outputs)


def occlusion_maps(model, image, label, layer=None, size=None, stride=None, grey=0.0, batch_size=64):
    """Occlusion maps of `image` (H, W, C) for class `label` (ZFNet Fig. 6 b, d, e).

    image: in model-input space (already preprocessed), H, W, C = the model's input shape.
    label: the correct class index.
    layer: name of a 4-D (channels-last) layer; default `last_feature_layer(model)`.
    size: side of the grey square in pixels; default `min(H, W) // 6` (at least 1).
    stride: step between positions; default `size // 2` (at least 1), half-overlapping squares.
    grey: value the square is filled with, in model-input space (0 = the mean after
        mean subtraction).
    batch_size: occluded copies per forward pass (results do not depend on it).

    The model's first output is read as class probabilities; if on the unoccluded image
    it is not a distribution (negative entries or a sum != 1), it is taken as logits and
    softmax is applied to every output.

    Returns a dict: "activation", "probability", "label" (arrays of shape (rows, cols),
    one entry per occluder position), "feature_map" (the map index used for
    "activation"), "layer" (its layer's name), "positions" ((rows, cols, 2) top-left corners (y, x)), "size",
    "stride", "true_label", "unoccluded_probability" (of `label`), "unoccluded_label" (the
    most probable class of the whole image: a misclassified image is marked in the figure).
    """
    image, size, stride, label = _checked(model, image, label, size, stride)
    height, width = image.shape[:2]
    layer = last_feature_layer(model) if layer is None else layer
    feature = get_layer(model, layer).output
    if len(feature.shape) != 4:
        raise ValueError(f"layer {layer!r} has output shape {feature.shape}, not a feature map "
                         f"(batch, H, W, C); name a convolutional layer.")

    # Sum over space inside the graph: only per-map totals come back, whatever the layer's size.
    probe = keras.Model(model.inputs[0], [keras.ops.sum(feature, axis=(1, 2)), model.outputs[0]])

    def run(batch):
        totals, outputs = probe(batch, training=False)
        return keras.ops.convert_to_numpy(totals), keras.ops.convert_to_numpy(outputs)

    totals, outputs = run(image[None])
    logits = not is_probability(outputs)
    to_prob = (lambda o: keras.ops.convert_to_numpy(keras.ops.softmax(o, axis=-1))) if logits else (lambda o: o)
    feature_map = int(np.argmax(totals[0]))

    ys, xs = _starts(height, size, stride), _starts(width, size, stride)
    positions = np.array([[(y, x) for x in xs] for y in ys], np.int64)
    activation, probs = _occluded(run, image, positions.reshape(-1, 2), size, grey, batch_size)
    activation, probs = activation[:, feature_map], to_prob(probs)
    grid = positions.shape[:2]
    return {
        "activation": activation.reshape(grid),
        "probability": probs[:, label].reshape(grid),
        "label": np.argmax(probs, axis=-1).reshape(grid),
        "feature_map": feature_map,
        "layer": layer,
        "positions": positions,
        "size": size,
        "stride": stride,
        "true_label": label,
        "unoccluded_probability": float(to_prob(outputs)[0, label]),
        "unoccluded_label": int(np.argmax(to_prob(outputs)[0])),  # the model's answer on the whole image
    }


def strongest_map_projection(model, image, maps, deconvnet=None):
    """ZFNet Fig. 6 (c): the deconvnet projection (`kzoo.visualize.deconv`) of the map of
    panel (b), `maps["feature_map"]` of `maps["layer"]` (the strongest in total on the
    unoccluded `image`), from that map's strongest position. `deconvnet`: a
    `Deconvnet(model)` to reuse across images. TensorFlow backend.

    Returns {"projection": (H, W, C) in input space, "projected_unit": (y, x, map)};
    `maps.update(...)` it and `occlusion_plot` draws panel (c)."""
    deconvnet = deconvnet or Deconvnet(model)
    projections, units, _ = deconvnet.project(np.asarray(image, np.float32)[None], maps["layer"],
                                              feature_map=maps["feature_map"])
    return {"projection": projections[0], "projected_unit": tuple(int(v) for v in units[0])}


LEGEND = 8  # panel (e): classes given their own colour (the true class first, then by area)


def occlusion_figure(image_display, maps, path, class_names=None):
    """Fig. 6-style PNG of `occlusion_maps` output (see `occlusion_plot`). Returns `path`."""
    return save_figure(occlusion_plot(image_display, maps, class_names), path)


def occlusion_plot(image_display, maps, class_names=None):
    """The figure of `occlusion_figure`, Fig. 6's panels: (a) the input picture (RGB in
    [0, 1]), (b) the activation map, (c) the map's projection (where `maps` holds
    `strongest_map_projection`'s entries; min-max scaled as `deconv` draws it), (d) the
    correct-class probability map, (e) the most-probable-class map (one colour per class,
    legend with `class_names` where given). Maps are drawn at the occluder centres, on
    the image's pixel scale."""
    def name(c, width=24):  # ImageNet's long names: the first synonym, cut, so legends stay in their panel
        text = str(class_names[c]).split(",")[0].strip() if class_names is not None else f"class {c}"
        return text if len(text) <= width else text[: width - 1] + "…"

    centres = maps["positions"] + maps["size"] / 2
    half = maps["stride"] / 2  # each cell spans one stride around its centre
    extent = (centres[0, 0, 1] - half, centres[0, -1, 1] + half, centres[-1, 0, 0] + half, centres[0, 0, 0] - half)
    projected = "projection" in maps
    fig, axes = figure(1, 5 if projected else 4, size=3.2)
    axes = list(axes[0])
    _input_panel(axes[0], image_display, maps, name)
    if projected:
        c = axes.pop(2)  # (c) sits between (b) and (d), as in Fig. 6
        c.imshow(to_display(maps["projection"]))
        y, x, channel = maps["projected_unit"]
        c.set_title(f"(c) map {channel} at {(y, x)}, projected", fontsize=9)
    _map_panel(fig, axes[1], maps["activation"], "viridis", f"(b) map {maps['feature_map']} total activation",
               extent)
    _map_panel(fig, axes[2], maps["probability"], "jet", f"(d) p({name(maps['true_label'])})", extent)
    _class_panel(axes[3], maps, name, extent)
    for ax in fig.axes[: 5 if projected else 4]:  # the panels, not the colour bars
        ax.set_xlim(-0.5, image_display.shape[1] - 0.5)  # imshow's pixel-centre convention
        ax.set_ylim(image_display.shape[0] - 0.5, -0.5)
        ax.set_xticks([]), ax.set_yticks([])  # as in Fig. 6; also keeps colourbars clear of the next panel
    fig.subplots_adjust(wspace=0.3)
    return fig


def _input_panel(ax, image_display, maps, name):
    """(a): the picture, titled with the model's answer; a misclassified one in red, framed."""
    ax.imshow(np.clip(image_display, 0, 1))
    answer = maps.get("unoccluded_label", maps["true_label"])
    if answer != maps["true_label"]:
        ax.set_title(f"(a) input: MISCLASSIFIED\nas {name(answer)}", fontsize=9, color="red")
        for side in ax.spines.values():
            side.set_color("red"), side.set_linewidth(3)
    else:
        ax.set_title(f"(a) input: {name(answer)}", fontsize=9)


def _map_panel(fig, ax, values, cmap, title, extent):
    """(b) or (d): a map with its colour bar, in full tick values."""
    from matplotlib.ticker import ScalarFormatter

    shown = ax.imshow(values, cmap=cmap, extent=extent, interpolation="nearest")
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    # Full tick values: an offset or a power ("+9.999e-1" when p ~ 1) would sit on the title.
    ticks = ScalarFormatter(useOffset=False)
    ticks.set_scientific(False)
    bar.ax.yaxis.set_major_formatter(ticks)
    ax.set_title(title, fontsize=9)


def _class_panel(ax, maps, name, extent):
    """(e): the LEGEND classes covering most cells (the true class first) in distinct colours,
    the rest one grey, so the panel and its legend stay readable with 1000 classes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    present, counts = np.unique(maps["label"], return_counts=True)
    shown = present[np.argsort(-counts, kind="stable")[:LEGEND]]
    shown = np.concatenate([[maps["true_label"]], shown[shown != maps["true_label"]]])[:LEGEND] \
        if maps["true_label"] in present else shown
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(shown))] + [(0.75, 0.75, 0.75, 1.0)]
    index = np.full(maps["label"].shape, len(shown))
    for i, k in enumerate(shown):
        index[maps["label"] == k] = i
    ax.imshow(index, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(shown) + 0.5, extent=extent,
              interpolation="nearest")
    handles = [Patch(color=c, label=name(k) + (" (true)" if k == maps["true_label"] else ""))
               for c, k in zip(colours, shown)]
    others = len(present) - len(shown)
    if others:
        handles.append(Patch(color=colours[-1], label=f"{others} other class{'es' if others > 1 else ''}"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    ax.set_title("(e) most probable class", fontsize=9)
