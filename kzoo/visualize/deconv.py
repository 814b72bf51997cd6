"""The deconvnet of Zeiler & Fergus (§2.1): project one activation back to pixel space.

Going down, each max-pooling is undone with the switches its forward pass recorded,
each ReLU rectifies the signal coming down, and each convolution is undone with the
transposed (flipped) filters; contrast normalization (LRN) is skipped; all other
activations of the chosen layer are set to zero. This is the gradient of the chosen
unit with two backward rules replaced: ReLU's backward is the rectification of the
incoming signal (not the forward mask), and LRN's backward is the identity. Max-pool
gradients route to the recorded maxima, which are the switches; convolution
gradients are the transposed convolutions.

ResNets have no deconvnet in any paper: we apply the same rules through the residual
graph (the signal splits at each addition, batch normalization in inference mode is
a per-channel scale, its backward is that scale). TensorFlow backend (custom gradients).
"""

import numpy as np

import keras

from kzoo.layers import CeilPadding2D, LocalResponseNormalization, TowerConv2D, ZeroPadShortcut
from kzoo.models.features import feature_extractor
from kzoo.utils.values import as_pair
from kzoo.visualize.common import figure, get_layer, to_display


def _tf():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("kzoo.visualize's deconvnet needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                           f"this process runs {keras.backend.backend()!r}.")
    import tensorflow as tf

    return tf


class _DeconvReLU(keras.layers.Layer):
    """ReLU forward; backward rectifies the signal coming down (deconvnet rule)."""

    def call(self, x):
        tf = _tf()

        @tf.custom_gradient
        def relu(x):
            return tf.nn.relu(x), lambda dy: tf.nn.relu(dy)

        return relu(x)


class _SkipBackward(keras.layers.Layer):
    """`layer` forward; identity backward (LRN is not undone on the way down)."""

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.inner = layer

    def call(self, x):
        tf = _tf()

        @tf.custom_gradient
        def forward(x):
            return self.inner(x), lambda dy: dy

        return forward(x)


def _plain_relu(layer):
    cfg = layer.get_config()
    return not cfg.get("max_value") and not cfg.get("negative_slope") and not cfg.get("threshold")


def _swap(layer):
    if isinstance(layer, keras.layers.ReLU) and _plain_relu(layer):
        return _DeconvReLU(name=layer.name)
    if isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "relu":
        return _DeconvReLU(name=layer.name)
    if isinstance(layer, LocalResponseNormalization):
        return _SkipBackward(layer, name=layer.name)
    if getattr(layer, "activation", None) is keras.activations.relu:
        raise ValueError(f"layer {layer.name!r} applies its ReLU inside; the deconvnet needs separate ReLU layers.")
    return layer  # shared: the clone reads the model's current weights


class Deconvnet:
    """Projections of single activations of `model` (any kzoo convnet) to pixel space.

        deconv = Deconvnet(model)
        proj, where = deconv.project(images, "relu5", feature_map=17)
    """

    def __init__(self, model):
        _tf()
        self.model = model
        self.clone = keras.models.clone_model(model, clone_function=_swap)
        self._heads = {}

    def _head(self, layers):
        key = (layers,) if isinstance(layers, str) else tuple(layers)
        if key not in self._heads:
            for layer in key:
                get_layer(self.model, layer)
                out = self.clone.get_layer(layer).output
                if len(out.shape) != 4:
                    raise ValueError(f"layer {layer!r} has output shape {tuple(out.shape)}; the deconvnet projects "
                                     f"feature maps (4-D outputs): conv, ReLU, LRN or pooling layers.")
            self._heads[key] = feature_extractor(self.clone, list(key))
        return self._heads[key]

    def activations(self, images, layer):
        """`layer`'s maps for `images` (numpy); a list of layers: {layer: maps}, from one forward pass."""
        outputs = self._head(layer)(np.asarray(images, np.float32), training=False)
        if isinstance(layer, str):
            return keras.ops.convert_to_numpy(outputs[layer])
        return {name: keras.ops.convert_to_numpy(outputs[name]) for name in layer}

    def project(self, images, layer, feature_map=None, position=None, units=None):
        """Project one activation per image of `layer` to pixel space.

        feature_map: channel index (default: the map with the strongest activation);
        position: (y, x) in the map (default: the map's strongest position);
        units: (N, 3) (y, x, channel) per image, instead of both.
        Returns (projections (N, H, W, C), units: (N, 3) int array of (y, x, channel),
        values: (N,) the projected activations).
        """
        tf = _tf()
        images = tf.constant(np.asarray(images, np.float32))
        head = self._head(layer)
        with tf.GradientTape() as tape:
            tape.watch(images)
            acts = head(images, training=False)[layer]
            if units is None:
                units = self._units(acts.numpy(), layer, feature_map, position)
            units = np.asarray(units, int).reshape(len(images), 3)
            mask = np.zeros(acts.shape, np.float32)
            mask[np.arange(len(units)), units[:, 0], units[:, 1], units[:, 2]] = 1.0
            # seed = the activation itself at the unit, zero elsewhere
            target = tf.reduce_sum(acts * tf.stop_gradient(acts * mask))
        projections = tape.gradient(target, images).numpy()
        values = acts.numpy()[np.arange(len(units)), units[:, 0], units[:, 1], units[:, 2]]
        return projections, units, values

    @staticmethod
    def _units(acts, layer, feature_map, position):
        n, h, w, c = acts.shape
        if feature_map is not None and not 0 <= feature_map < c:
            raise ValueError(f"feature_map {feature_map} is outside the {c} maps of layer {layer!r} (0..{c - 1}).")
        if position is not None and not (0 <= position[0] < h and 0 <= position[1] < w):
            raise ValueError(f"position {tuple(position)} is outside the {h}x{w} map of layer {layer!r}.")
        units = np.zeros((n, 3), int)
        for i, a in enumerate(acts):
            ch = feature_map if feature_map is not None else int(a.max(axis=(0, 1)).argmax())
            yx = position if position is not None else np.unravel_index(a[..., ch].argmax(), (h, w))
            units[i] = (yx[0], yx[1], ch)
        return units


def deconv_figure(pictures, projections, units, layer, names=None):
    """A row per image: the picture (RGB in [0, 1]), titled with its name (`names`, else
    "image I"), beside its projection, titled with the projected unit ("relu5 map 12 at
    (5, 4)": feature map, then (y, x)); the figure's title says what is shown. Returns it."""
    fig, axes = figure(len(pictures), 2)
    fig.suptitle(f"{layer}: deconvnet projections to pixel space (ZFNet §2.1), one unit per image", fontsize=10)
    for row, (picture, projection, unit) in enumerate(zip(pictures, projections, units)):
        y, x, channel = (int(v) for v in unit)
        axes[row][0].imshow(picture)
        axes[row][0].set_title(names[row] if names is not None else f"image {row + 1}", fontsize=8)
        axes[row][1].imshow(to_display(projection))
        axes[row][1].set_title(f"{layer} map {channel} at {(y, x)}", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    return fig


def _same_pad(length, k, s):
    out = -(-length // s)
    return max((out - 1) * s + k - length, 0) // 2


def receptive_field(model, layer):
    """Per axis (y, x): (jump, size, start) of `layer`'s units in input pixels: unit i
    is centred at start + i * jump and sees `size` pixels (padding counted)."""
    get_layer(model, layer)
    fields = {id(model.inputs[0]): ((1, 1, 0.0), (1, 1, 0.0))}
    for lyr in model.layers:
        if isinstance(lyr, keras.layers.InputLayer):
            continue
        inputs = lyr.input if isinstance(lyr.input, (list, tuple)) else [lyr.input]
        known = [fields[id(t)] for t in inputs if id(t) in fields]
        if not known:
            continue
        rf = max(known, key=lambda f: f[0][1])  # a residual add: the larger branch
        if len(lyr.output.shape) == 4:
            rf = tuple(_through(lyr, axis, rf[axis], inputs[0].shape[1 + axis]) for axis in (0, 1))
            fields[id(lyr.output)] = rf
        if lyr.name == layer:
            return rf
    raise ValueError(f"layer {layer!r} is not on a path from {model.name!r}'s input.")


def _through(lyr, axis, field, length):
    jump, size, start = field
    if isinstance(lyr, (keras.layers.Conv2D, TowerConv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        cfg = lyr.get_config()
        k = as_pair(cfg["kernel_size"] if "kernel_size" in cfg else cfg["pool_size"])[axis]
        s = as_pair(cfg["strides"])[axis]
        pad = _same_pad(length, k, s) if cfg["padding"] == "same" else 0
        return jump * s, size + (k - 1) * jump, start + ((k - 1) / 2 - pad) * jump
    if isinstance(lyr, keras.layers.ZeroPadding2D):
        return jump, size, start - lyr.padding[axis][0] * jump
    if isinstance(lyr, CeilPadding2D):
        return jump, size, start - lyr.padding * jump
    if isinstance(lyr, ZeroPadShortcut):
        return jump * lyr.strides, size, start
    if lyr.output.shape[1 + axis] != length and not isinstance(lyr, keras.layers.Flatten):
        raise ValueError(f"cannot follow the receptive field through {lyr.name!r} ({type(lyr).__name__}).")
    return field


def patch_box(field, y, x):
    """(top, left, height, width) in input pixels of the unit (y, x) with `field`."""
    (jy, sy, oy), (jx, sx, ox) = field
    return (int(round(oy + y * jy - (sy - 1) / 2)), int(round(ox + x * jx - (sx - 1) / 2)), sy, sx)


def crop_patch(image, box, fill=0.0):
    """`image`'s pixels under `box`, padded with `fill` where the box leaves the image."""
    top, left, h, w = box
    pad = max(h, w)
    padded = np.pad(np.asarray(image, np.float32), ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    return padded[top + pad : top + pad + h, left + pad : left + pad + w]
