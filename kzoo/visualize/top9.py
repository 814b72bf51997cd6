"""ZFNet's Figs. 2 and 4: the strongest activations of feature maps, their input
patches and deconvnet projections, over a dataset or along training."""

import os
import re
import warnings

import numpy as np

import keras

from kzoo.utils.files import atomic_write
from kzoo.models.features import stage_layers
from kzoo.visualize.common import figure, get_layer, grid, save_figure, to_display
from kzoo.visualize.deconv import Deconvnet, crop_patch, patch_box, receptive_field

EVOLUTION_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)  # ZFNet Fig. 4
EVOLUTION_MAPS = 4  # feature maps per layer block in Fig. 4: a random subset, as the paper's (it does not say how many)


def _check_maps(model, layer, feature_maps):
    channels = get_layer(model, layer).output.shape[-1]
    maps = list(range(min(channels, 8))) if feature_maps is None else [int(m) for m in feature_maps]
    bad = [m for m in maps if not 0 <= m < channels]
    if bad:
        raise ValueError(f"feature maps {bad} are outside the {channels} maps of layer {layer!r} (0..{channels - 1}).")
    return maps


def _keep_strongest(best, acts, inputs, display, seen, k):
    """Merge one batch's `acts` (N, H, W, C) into best = {map: up to k (value, index, (y, x),
    input, display)}, strongest first; one position per image, its maximum."""
    h, w = acts.shape[1:3]
    for m in best:
        flat = acts[..., m].reshape(len(acts), -1)
        peaks = flat.max(1)
        for i in np.argsort(-peaks, kind="stable")[:k]:
            y, x = np.unravel_index(flat[i].argmax(), (h, w))
            best[m].append((float(peaks[i]), seen + int(i), (int(y), int(x)), inputs[i], np.asarray(display[i])))
        best[m] = sorted(best[m], key=lambda e: -e[0])[:k]  # k images per map in memory; ties: the earlier image


def _project_entries(model, deconv, layer, best, chunk=16):
    """best's entries with their input patch and deconvnet projection, cut to the unit's receptive field."""
    field = receptive_field(model, layer)
    flat = [(m, entry) for m, entries in best.items() for entry in entries]
    results = {m: [] for m in best}
    for start in range(0, len(flat), chunk):  # a few images per gradient: bounded memory
        part = flat[start : start + chunk]
        projections, _, _ = deconv.project(np.stack([e[3] for _, e in part]), layer,
                                           units=[(*e[2], m) for m, e in part])
        for (m, (value, index, pos, _, disp)), proj in zip(part, projections):
            box = patch_box(field, *pos)
            results[m].append({"value": value, "index": index, "position": pos,
                               "patch": crop_patch(disp, box), "projection": crop_patch(proj, box)})
    return results


def strongest_activations(model, batches, layers, feature_maps=None, k=1, deconv=None):
    """One pass over `batches` for several layers at once: for each of `layers` and each of
    its feature maps, the `k` images where the map responds most, projected.

    feature_maps: a list (the same maps in every layer), {layer: list}, or None (the first 8).
    batches: as `top_activations`'. Returns {layer: {map: entries}}, entries as
    `top_activations`' (value, index, position, patch, projection), the strongest first.
    """
    deconv = deconv or Deconvnet(model)
    layers = list(layers)
    per_layer = feature_maps if isinstance(feature_maps, dict) else dict.fromkeys(layers, feature_maps)
    best = {layer: {m: [] for m in _check_maps(model, layer, per_layer.get(layer))} for layer in layers}
    seen = 0
    for batch in batches:
        inputs, display = batch if isinstance(batch, (tuple, list)) else (batch, batch)
        inputs = np.asarray(inputs, np.float32)
        if not len(inputs):
            continue
        acts = deconv.activations(inputs, layers)  # one forward pass for all layers
        for layer in layers:
            _keep_strongest(best[layer], acts[layer], inputs, display, seen, k)
        seen += len(inputs)
    if not seen:
        raise ValueError("no images: the dataset searched for the strongest activations is empty.")
    return {layer: _project_entries(model, deconv, layer, maps) for layer, maps in best.items()}


def top_activations(model, batches, layer, feature_maps=None, k=9, deconv=None):
    """Stream `batches` once and keep, for each feature map of `layer`, the `k` images
    where it responds most (one position per image, its maximum).

    batches: iterable of (N, H, W, C) arrays in model-input space, or of (inputs,
    display) pairs where `display` holds the images to cut the patches from.
    Returns {map: list of k dicts (value, index, position, patch, projection)}, the
    strongest first; patch and projection are cut to the unit's receptive field.
    """
    return strongest_activations(model, batches, [layer], {layer: feature_maps}, k, deconv)[layer]


def top9_figure(results, path, title=None):
    """Fig. 2 style: for each feature map, its projections (3x3, left) and patches (right)."""
    rows = len(results)
    fig, axes = figure(rows, 2, size=2.5)
    for row, (m, entries) in enumerate(results.items()):
        cols = int(np.ceil(np.sqrt(len(entries))))
        for col, key in enumerate(("projection", "patch")):
            ax = axes[row][col]
            ax.imshow(grid([to_display(e[key]) for e in entries], cols))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(f"map {m}")
    axes[0][0].set_title("projections")
    axes[0][1].set_title("patches")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def evolution_layers(model, layers=None):
    """The layers Fig. 4 shows, a block each: `layers` (a name or a list), or by default the
    model's stages (`kzoo.models.features.stage_layers`): relu1..relu5 for AlexNet and ZFNet
    (OverFeat: relu1..relu5, accurate also relu6); ResNets: conv1_relu and each stage's last
    block (convN_blockM_out; the deconvnet's rules taken through the residual graph)."""
    if layers is None:
        layers = stage_layers(model)
        if not layers:
            raise ValueError(f"{model.name!r} has no layers kzoo knows as its stages (AlexNet/ZFNet/OverFeat's "
                             f"relu1..relu5, ResNet's conv1_relu and convN_blockM_out); name them: "
                             f"FeatureEvolution(images, layers=[...], path=...).")
    layers = [layers] if isinstance(layers, str) else list(layers)
    for layer in layers:
        get_layer(model, layer)
    return layers


def random_maps(model, layers, count=EVOLUTION_MAPS, seed=0):
    """{layer: a random subset of `count` of its feature maps, sorted} (all maps where it has fewer)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for layer in layers:
        channels = get_layer(model, layer).output.shape[-1]
        chosen[layer] = sorted(int(m) for m in rng.choice(channels, min(count, channels), replace=False))
    return chosen


def _batches(images, batch_size):
    images = images() if callable(images) else images
    if getattr(images, "ndim", None) == 4:  # one array of images
        images = np.asarray(images, np.float32)
        return (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    return images  # already batches


class FeatureEvolution(keras.callbacks.Callback):
    """Fig. 4: at the chosen epochs, find for each chosen feature map of each of `layers`
    its strongest activation over all of `images` (one pass, all layers at once), project
    it with the deconvnet and redraw the figure at `path`: a block per layer, a row per map,
    a column per recorded epoch. The projections (and where each came from) also go to
    `path` with the suffix .npz: `epoch{E}_{layer}_map{M}` (the projection cut to the
    unit's receptive field), `..._unit` (image index, y, x) and `..._value`.

    images: model-input arrays (N, H, W, C), or a function returning such an array or an
    iterable of batches; it is called at every recorded epoch (a fresh pass each time; the
    recipes pass `kzoo.train.engine.training_images`). layers: None = the model's stages
    (`evolution_layers`: relu1..relu5 for AlexNet/ZFNet), a name, or a list. feature_maps:
    None = a random subset of `maps_per_layer` maps of each layer (drawn with `seed`, as the
    paper's "randomly chosen subset"), a list (the same maps in every layer) or {layer: list}.
    Works with model.fit and with kzoo's training engine (`train(..., callbacks=[...])`).
    A resumed run (a new instance, same `path`) first loads the epochs already in the .npz
    (those before the one it records now) so the figure keeps them; an unreadable npz, or one
    for other layers/maps (a different seed), is warned about and replaced at the next write.
    """

    def __init__(self, images, layers, path, feature_maps=None, epochs=EVOLUTION_EPOCHS,
                 maps_per_layer=EVOLUTION_MAPS, seed=0, batch_size=64):
        super().__init__()
        self.images, self.layers, self.path = images, layers, path
        self.feature_maps, self.epochs = feature_maps, tuple(int(e) for e in epochs)
        self.maps_per_layer, self.seed, self.batch_size = maps_per_layer, seed, batch_size
        self.frames = {}  # epoch -> {layer: {map: entry (value, index, position, patch, projection)}}
        self._deconv = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 not in self.epochs:
            return
        if self._deconv is None:
            self.layers = evolution_layers(self.model, self.layers)
            if self.feature_maps is None:
                self.feature_maps = random_maps(self.model, self.layers, self.maps_per_layer, self.seed)
            elif not isinstance(self.feature_maps, dict):
                self.feature_maps = dict.fromkeys(self.layers, list(self.feature_maps))
            self._deconv = Deconvnet(self.model)  # shares the model's layers: sees the current weights
            self.frames = {**self._load_frames(before=epoch + 1), **self.frames}
        found = strongest_activations(self.model, _batches(self.images, self.batch_size), self.layers,
                                      self.feature_maps, k=1, deconv=self._deconv)
        self.frames[epoch + 1] = {layer: {m: entries[0] for m, entries in maps.items()}
                                  for layer, maps in found.items()}
        save_figure(evolution_figure(self.frames), self.path)
        arrays = {}
        for e, frame in self.frames.items():
            for layer, maps in frame.items():
                for m, entry in maps.items():
                    key = f"epoch{e}_{layer}_map{m}"
                    arrays[key] = entry["projection"]
                    arrays[key + "_unit"] = np.array([entry["index"], *entry["position"]])
                    arrays[key + "_value"] = np.float32(entry["value"])
        with atomic_write(self._npz_path(), "wb") as f:
            np.savez(f, **arrays)

    def _npz_path(self):
        return self.path.rsplit(".", 1)[0] + ".npz"

    def _load_frames(self, before):
        """The frames of epochs < `before` in an earlier run's .npz (a resume), or {} (none, or
        unreadable, or for other layers/maps than this run's: warned; the file is left until
        the next write replaces it)."""
        path = self._npz_path()
        if not os.path.exists(path):
            return {}
        key_re = re.compile(r"epoch(\d+)_(.+)_map(\d+)")
        frames = {}
        try:
            with np.load(path, allow_pickle=False) as saved:
                for key in saved.files:
                    match = key_re.fullmatch(key)
                    if match is None:
                        if not key.endswith(("_unit", "_value")):
                            raise ValueError(f"unexpected key {key!r}")
                        continue
                    e, layer, m = int(match[1]), match[2], int(match[3])
                    unit = [int(u) for u in saved[key + "_unit"]]
                    if len(unit) != 3:
                        raise ValueError(f"{key}_unit is not (image, y, x)")
                    frames.setdefault(e, {}).setdefault(layer, {})[m] = {
                        "value": float(saved[key + "_value"]), "index": unit[0], "position": tuple(unit[1:]),
                        "projection": np.asarray(saved[key])}
            wanted = {layer: sorted(int(m) for m in self.feature_maps[layer]) for layer in self.layers}
            for e, frame in frames.items():
                if sorted(frame) != sorted(wanted) or any(sorted(frame[l]) != wanted[l] for l in wanted):
                    raise ValueError(f"epoch {e} holds other layers/feature maps than this run's {wanted}")
        except Exception as error:  # noqa: BLE001  (never stop training over an old figure)
            warnings.warn(f"FeatureEvolution: ignoring the earlier {path} ({type(error).__name__}: {error}); "
                          f"starting the evolution afresh (the file is replaced at the next recorded epoch).",
                          stacklevel=2)
            return {}
        # in this run's layer/map order (the figure's rows); epochs from `before` on are being redone
        return {e: {layer: {m: frame[layer][m] for m in self.feature_maps[layer]} for layer in self.layers}
                for e, frame in sorted(frames.items()) if e < before}


def evolution_figure(frames, size=1.0):
    """Fig. 4 from FeatureEvolution's `frames`: a block (a matplotlib subfigure titled with
    the layer) per layer, a row per feature map, a column per recorded epoch; each panel the
    projection of the map's strongest activation, contrast stretched, captioned with the
    index of the image it came from (a new index: the paper's sudden jumps). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = sorted(frames)
    layers = list(frames[epochs[0]])
    rows = [len(frames[epochs[0]][layer]) for layer in layers]
    fig = plt.figure(figsize=(len(epochs) * size + 0.8, sum(r + 0.6 for r in rows) * size))
    blocks = np.atleast_1d(fig.subfigures(len(layers), 1, height_ratios=[r + 0.6 for r in rows]))
    for block, layer, n in zip(blocks, layers, rows):
        block.suptitle(layer, fontsize=10, fontweight="bold")
        axes = block.subplots(n, len(epochs), squeeze=False)
        for r, m in enumerate(frames[epochs[0]][layer]):
            for c, e in enumerate(epochs):
                entry, ax = frames[e][layer][m], axes[r][c]
                ax.imshow(to_display(entry["projection"]))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(f"#{entry['index']}", fontsize=6, labelpad=1)
                if r == 0:
                    ax.set_title(f"epoch {e}", fontsize=7)
            axes[r][0].set_ylabel(f"map {m}", fontsize=7)
    return fig
