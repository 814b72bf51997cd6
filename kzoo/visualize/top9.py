"""ZFNet's Figs. 2 and 4: the strongest activations of feature maps, their input
patches and deconvnet projections, over a dataset or along training."""

import numpy as np

import keras

from kzoo.utils.files import atomic_write
from kzoo.visualize.common import figure, grid, last_feature_layer, save_figure, to_display
from kzoo.visualize.deconv import Deconvnet, crop_patch, patch_box, receptive_field

EVOLUTION_EPOCHS = (1, 2, 5, 10, 20, 30, 40, 64)  # ZFNet Fig. 4


def _check_maps(deconv, layer, feature_maps, sample):
    channels = deconv.activations(sample[:1], layer).shape[-1]
    maps = list(range(min(channels, 8))) if feature_maps is None else [int(m) for m in feature_maps]
    bad = [m for m in maps if not 0 <= m < channels]
    if bad:
        raise ValueError(f"feature maps {bad} are outside the {channels} maps of layer {layer!r} (0..{channels - 1}).")
    return maps


def top_activations(model, batches, layer, feature_maps=None, k=9, deconv=None):
    """Stream `batches` once and keep, for each feature map of `layer`, the `k` images
    where it responds most (one position per image, its maximum).

    batches: iterable of (N, H, W, C) arrays in model-input space, or of (inputs,
    display) pairs where `display` holds the images to cut the patches from.
    Returns {map: list of k dicts (value, index, position, patch, projection)}, the
    strongest first; patch and projection are cut to the unit's receptive field.
    """
    deconv = deconv or Deconvnet(model)
    best, maps, seen = {}, None, 0
    for batch in batches:
        inputs, display = batch if isinstance(batch, (tuple, list)) else (batch, batch)
        inputs = np.asarray(inputs, np.float32)
        if maps is None:
            maps = _check_maps(deconv, layer, feature_maps, inputs)
            best = {m: [] for m in maps}
        acts = deconv.activations(inputs, layer)
        h, w = acts.shape[1:3]
        for m in maps:
            flat = acts[..., m].reshape(len(acts), -1)
            for i in np.argsort(-flat.max(1))[:k]:
                y, x = np.unravel_index(flat[i].argmax(), (h, w))
                best[m].append((float(flat[i].max()), seen + int(i), (int(y), int(x)), inputs[i], np.asarray(display[i])))
            best[m] = sorted(best[m], key=lambda e: -e[0])[:k]  # only k images per map stay in memory
        seen += len(inputs)
    if maps is None:
        raise ValueError("no images: the dataset given to top_activations is empty.")
    field = receptive_field(model, layer)
    results = {}
    for m, entries in best.items():
        units = [(y, x, m) for _, _, (y, x), _, _ in entries]
        projections, _, _ = deconv.project(np.stack([e[3] for e in entries]), layer, units=units)
        results[m] = [{"value": value, "index": index, "position": pos,
                       "patch": crop_patch(disp, patch_box(field, *pos)),
                       "projection": crop_patch(proj, patch_box(field, *pos))}
                      for (value, index, pos, _, disp), proj in zip(entries, projections)]
    return results


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


class FeatureEvolution(keras.callbacks.Callback):
    """Fig. 4: at the chosen epochs, project the strongest activation of each of
    `feature_maps` of `layer` over `images` and redraw the grid (maps x epochs) at
    `path`; the projections also go to `path` with the suffix .npz.

    images: model-input arrays, or a function returning them (called once, at the
    first recorded epoch, when the dataset's mean is known). layer: None = the last
    rectified feature map (layer 5). Works with model.fit
    and with kzoo's training engine (`train(..., callbacks=[...])`).
    """

    def __init__(self, images, layer, path, feature_maps=None, epochs=EVOLUTION_EPOCHS):
        super().__init__()
        self.images, self.layer, self.path = images, layer, path
        self.feature_maps, self.epochs = feature_maps, tuple(int(e) for e in epochs)
        self.frames = {}  # epoch -> {map: projection patch}
        self._deconv = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 not in self.epochs:
            return
        if self._deconv is None:
            self.layer = self.layer or last_feature_layer(self.model)
            if callable(self.images):
                self.images = self.images()
            self.images = np.asarray(self.images, np.float32)
            self._deconv = Deconvnet(self.model)  # shares the model's layers: sees the current weights
            self.feature_maps = _check_maps(self._deconv, self.layer, self.feature_maps, self.images)
        acts = self._deconv.activations(self.images, self.layer)
        field = receptive_field(self.model, self.layer)
        frame = {}
        for m in self.feature_maps:
            i, y, x = np.unravel_index(acts[..., m].argmax(), acts.shape[:3])
            proj, _, _ = self._deconv.project(self.images[i : i + 1], self.layer, units=[(y, x, m)])
            frame[m] = crop_patch(proj[0], patch_box(field, y, x))
        self.frames[epoch + 1] = frame
        self._draw()

    def _draw(self):
        epochs = sorted(self.frames)
        fig, axes = figure(len(self.feature_maps), len(epochs), size=1.2)
        for r, m in enumerate(self.feature_maps):
            for c, e in enumerate(epochs):
                axes[r][c].imshow(to_display(self.frames[e][m]))
                axes[r][c].set_xticks([])
                axes[r][c].set_yticks([])
                if r == 0:
                    axes[r][c].set_title(f"epoch {e}", fontsize=8)
            axes[r][0].set_ylabel(f"map {m}", fontsize=8)
        save_figure(fig, self.path)
        with atomic_write(self.path.rsplit(".", 1)[0] + ".npz", "wb") as f:
            np.savez(f, **{f"epoch{e}_map{m}": p for e in epochs for m, p in self.frames[e].items()})
