"""Classifiers made fully convolutional (OverFeat §3.5), with the same weights.

The classifier sees every window of the last feature map (6x6 AlexNet/ZFNet/OverFeat
fast, 5x5 accurate) as it saw the one window at the training size: the same Dense
layers on each window's pixels, which equals the first one as a convolution with the
window as kernel and the later ones as 1x1 convolutions. The result accepts any input
at least the training size and returns a spatial map of class scores, one per window.
"""

import keras
import numpy as np

from kzoo.evaluate.protocols import RESNET_SCALES
from kzoo.models.common import deep_graph_recursion
from kzoo.preprocessing import center_crop, resize, resize_shorter

# per-feature layers that act on each window alike (Normalization: the box regressor's feature scaling)
PASS_THROUGH = (keras.layers.ReLU, keras.layers.Dropout, keras.layers.Activation, keras.layers.Normalization)


def with_input_shape(model, shape=(None, None, 3)):
    """The same network (a copy, same weights) for another input shape; for models
    whose head does not fix the size (ResNet's global pooling, include_top=False)."""
    with deep_graph_recursion():
        clone = keras.models.clone_model(model, input_tensors=keras.Input(shape))
    clone.set_weights(model.get_weights())
    return clone


def layer_index(model, name, what):
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise ValueError(
            f"{what} needs a model with a '{name}' layer (kzoo's AlexNet, ZFNet and OverFeat "
            f"classifiers, include_top=True); '{model.name}' has none. Its layers: {', '.join(names[:12])}, ..."
        )
    return names.index(name)


def feature_chain(model, stop):
    """The layers from the input up to (not including) index `stop`, checked to form a chain."""
    chain = model.layers[1:stop]
    for layer in chain:
        if isinstance(layer, keras.layers.Add) or isinstance(layer, keras.Model):
            raise ValueError(f"'{model.name}' is not a plain chain of layers before its classifier "
                             f"(found '{layer.name}'); use with_input_shape for residual nets.")
    return chain


def apply_chain(chain, x):
    for layer in chain:
        x = layer(x)
    return x


def classifier_on_windows(model, flatten_index):
    """A function applying `model`'s classifier (its own layers after Flatten, same weights)
    to every window of a feature map: the windows' pixels become a patch vector at each
    position (in Flatten's (row, column, channel) order) and the Dense layers act on the
    last axis. The same as the classifier turned into convolutions (the first with the
    window as kernel), but as matmuls: a 5x5x1024x4096 kernel on maps a few pixels wide
    is far from the matmul peak as a convolution."""
    height, width = model.layers[flatten_index].input.shape[1:3]
    steps = []
    for layer in model.layers[flatten_index + 1 :]:
        if not isinstance(layer, (keras.layers.Dense, *PASS_THROUGH)):
            raise ValueError(f"cannot apply '{layer.name}' ({type(layer).__name__}) after Flatten to every "
                             f"window; expected Dense, ReLU, Dropout, Activation or Normalization layers.")
        steps.append(layer)

    def apply(x):
        rows, cols = x.shape[1:3]
        if (rows is not None and rows < height) or (cols is not None and cols < width):
            raise ValueError(f"the {rows}x{cols} feature map is smaller than the classifier's {height}x{width} "
                             f"window: the input is too small.")
        pixels = [x[:, i : i - height + 1 or None, j : j - width + 1 or None] for i in range(height)
                  for j in range(width)]
        x = keras.ops.concatenate(pixels, axis=-1)  # at each position its window, flattened as Flatten does
        for layer in steps:
            x = layer(x)
        return x

    return apply


def fully_convolutional(model):
    """`model` (AlexNet/ZFNet/OverFeat with include_top=True, or a ResNet) for any input size,
    returning a (batch, rows, cols, classes) score map with the original weights."""
    names = [layer.name for layer in model.layers]
    inputs = keras.Input((None, None, model.inputs[0].shape[-1]))
    if "flatten" not in names and "avg_pool" in names and names[-1] == "fc":
        clone = with_input_shape(model)
        features = clone.get_layer(names[names.index("avg_pool") - 1]).output
        fc = model.get_layer("fc")
        kernel, bias = fc.get_weights()
        conv = keras.layers.Conv2D(fc.units, 1, activation=fc.activation, name="fc")
        outputs = conv(features)
        conv.set_weights([kernel.reshape(1, 1, *kernel.shape), bias])
        return keras.Model(clone.inputs[0], outputs, name=f"{model.name}_fcn")
    flatten = layer_index(model, "flatten", "fully_convolutional")
    x = apply_chain(feature_chain(model, flatten), inputs)
    return keras.Model(inputs, classifier_on_windows(model, flatten)(x), name=f"{model.name}_fcn")




def cover_crop(image, height, width):
    """(H, W, C) -> a `height` x `width` view: resized, keeping the aspect, to the smallest
    size covering it, then its centre cut out (the dense protocol's views)."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    resized = resize(image, max(height, round(h * scale)), max(width, round(w * scale)))
    return center_crop(resized, height, width)


def mean_probabilities(fcn, views, flips=False):
    """The class probabilities of `fcn` averaged over the positions of each view (H, W, C),
    then over the views (and their flips)."""
    per_view = []
    for view in views:
        view = np.asarray(view, "float32")
        for v in ([view, view[:, ::-1]] if flips else [view]):
            scores = keras.ops.convert_to_numpy(fcn(v[None]))[0]
            if scores.size == 0:
                raise ValueError(f"a {v.shape[0]}x{v.shape[1]} view is smaller than the network's window.")
            per_view.append(scores.reshape(-1, scores.shape[-1]).mean(axis=0))
    return np.mean(per_view, axis=0)


def multiscale_probabilities(fcn, images, sizes=RESNET_SCALES, flips=False):
    """ResNet's fully convolutional multi-scale test: for each image, the class
    probabilities averaged over its positions and over the shorter sides `sizes`
    (and flips). `fcn` is `fully_convolutional(model)` of a softmax classifier."""
    return np.stack([mean_probabilities(fcn, [resize_shorter(np.asarray(image, "float32"), size) for size in sizes],
                                        flips) for image in images])
