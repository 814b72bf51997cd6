"""OverFeat's dense multi-scale evaluation (§3.3-3.4, Table 5).

The last max-pooling is replaced by offset max-pooling (every offset of the
non-overlapping window), the classifier runs as convolutions on each offset's
map, and the results interleave into a map with the pooling's stride divided
by its size (36 -> 12 pixels for the accurate model). Per scale and flip, each
class takes its maximum over positions; then scales and flips are averaged.
"""

import numpy as np

import keras

from kzoo.evaluate.fcn import apply_chain, classifier_on_windows, cover_crop, feature_chain, layer_index
from kzoo.layers import InterleaveOffsets, OffsetMaxPooling2D
from kzoo.utils.values import as_pair

# Table 5 (accurate model): input height x width per scale, and the classifier map each
# offset gives there; dense_input_sizes derives the first from the second for any model.
TABLE5_SCALES = ((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))
TABLE5_MAPS = ((1, 1), (2, 3), (3, 5), (5, 7), (6, 8), (7, 10))


def last_pool(model):
    """(index of Flatten, the max-pooling before it), checked to be non-overlapping."""
    flatten = layer_index(model, "flatten", "dense evaluation")
    pool = model.layers[flatten - 1]
    if not isinstance(pool, keras.layers.MaxPooling2D) or tuple(pool.pool_size) != tuple(pool.strides):
        raise ValueError(
            f"offset max-pooling needs a non-overlapping last max-pooling before the classifier "
            f"(OverFeat's pool5/pool6); '{model.name}' has '{pool.name}' "
            f"({type(pool).__name__}{'' if not hasattr(pool, 'pool_size') else f', size {pool.pool_size}, stride {pool.strides}'}). "
            f"Use fully_convolutional() for dense maps without offsets."
        )
    return flatten, pool


def dense_model(model):
    """OverFeat `model` (include_top=True) -> any input -> interleaved class-score map."""
    flatten, pool = last_pool(model)
    size = tuple(pool.pool_size)
    inputs = keras.Input((None, None, model.inputs[0].shape[-1]))
    x = apply_chain(feature_chain(model, flatten - 1), inputs)
    x = OffsetMaxPooling2D(size, name="offset_pool")(x)
    x = classifier_on_windows(model, flatten)(x)
    return keras.Model(inputs, InterleaveOffsets(size, name="interleave")(x), name=f"{model.name}_dense")


def dense_input_sizes(model, maps=TABLE5_MAPS):
    """The (height, width) input giving each classifier map of `maps` at every offset of
    the last pooling: Table 5's sizes for OverFeat accurate, the same construction for
    any model with a non-overlapping last pooling (fast, or a reduced-size demo model).

    Per axis: the pooled map holds the classifier map plus its window minus one; the
    last pooling's input is the smallest at which every offset gives that map
    (3 * 5 + 2 = 17 for Table 5's first row); each layer below is inverted to the
    smallest input giving its output, so no stride drops a pixel.
    """
    flatten, pool = last_pool(model)
    window = model.layers[flatten].input.shape[1:3]  # the classifier's receptive field, in pooled units
    sizes = []
    for row in maps:
        size = []
        for axis, length in enumerate(row):
            k, s = pool.pool_size[axis], pool.strides[axis]
            pooled = length + window[axis] - 1
            length = (pooled - 1) * s + k + s - 1  # the last offset, s - 1, still has `pooled` windows
            for layer in reversed(model.layers[1 : flatten - 1]):
                length = _smallest_input(layer, axis, length)
            size.append(length)
        sizes.append(tuple(size))
    return sizes


def _smallest_input(layer, axis, length):
    """The smallest input length (height axis 0, width 1) for which `layer` outputs `length`."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return length - sum(layer.padding[axis])
    kernel = getattr(layer, "pool_size", None) or getattr(layer, "kernel_size", None)
    if kernel is not None and getattr(layer, "padding", None) in ("valid", "same"):
        kernel, stride = as_pair(kernel)[axis], as_pair(layer.strides)[axis]
        kernel = (kernel - 1) * as_pair(getattr(layer, "dilation_rate", 1))[axis] + 1
        return (length - 1) * stride + (kernel if layer.padding == "valid" else 1)
    probe = (None, 9, 11, *layer.input.shape[3:])  # any other layer must keep the spatial size
    if tuple(layer.compute_output_shape(probe)[1:3]) != (9, 11):
        raise ValueError(f"dense evaluation cannot size the input through '{layer.name}' "
                         f"({type(layer).__name__}): it changes the spatial size and is not a convolution, "
                         f"pooling or ZeroPadding2D layer.")
    return length


def dense_scores(dense, images, flips=True):
    """Mean over `images` (one per scale, each (H, W, C)) and their flips of the
    per-class maximum over the dense map; returns (classes,) scores."""
    per_view = []
    for image in images:
        views = _with_flips(np.asarray(image, "float32")[None], flips)
        try:
            maps = np.asarray(dense(views))
        except Exception as err:  # the backend's shape error, whichever backend
            raise _too_small(views.shape[1:3]) from err
        per_view.extend(_maxima(maps, views.shape[1:3]))
    return np.mean(per_view, axis=0)


def _with_flips(views, flips):
    return np.concatenate([views, views[:, :, ::-1]]) if flips else views


def _maxima(maps, shape):
    """Per view, each class's maximum over the map's positions (an empty map: the input was
    smaller than one window at every offset)."""
    if maps.shape[1] == 0 or maps.shape[2] == 0:
        raise _too_small(shape)
    return maps.max(axis=(1, 2))


def _too_small(shape):
    return ValueError(f"a {shape[0]}x{shape[1]} image is too small for dense evaluation with offset pooling: every "
                      f"offset's pooled map must still hold the classifier's window (OverFeat fast needs more than "
                      f"231, accurate more than 221; Table 5 starts at 245).")


class DenseEvaluator:
    """OverFeat's dense protocol on many images: `dense_model(model)` built once, one
    compiled pass per input shape (a fixed-shape model each, traced once), the views
    of one shape run as batches of `batch_size`."""

    # 16 views: the evaluation's chunk of 8 images with their flips in one pass; Table 5's first
    # scale then reaches 84-89% of bfloat16's matmul peak (8 views: 55%)
    def __init__(self, model, batch_size=16):
        self.dense = dense_model(model)
        self.batch_size = batch_size
        self._passes = {}  # (height, width) -> fixed-shape model

    def score_maps(self, views):
        """(N, H, W, C) views of one shape -> (N, rows, cols, classes) dense score maps."""
        views = np.asarray(views, "float32")
        shape = views.shape[1:3]
        if shape not in self._passes:
            inputs = keras.Input(views.shape[1:])
            try:
                self._passes[shape] = keras.Model(inputs, self.dense(inputs))
            except ValueError as err:
                raise _too_small(shape) from err
        fixed = self._passes[shape]
        return np.concatenate([keras.ops.convert_to_numpy(fixed.predict_on_batch(views[i : i + self.batch_size]))
                               for i in range(0, len(views), self.batch_size)])

    def scores(self, images, sizes, flips=True):
        """(N, classes): for each image (H, W, C, mean-free), the per-class maximum over the
        dense map of each view (`cover_crop` to each of `sizes`, and its flip), averaged
        over the views."""
        total = 0.0
        for height, width in sizes:
            views = _with_flips(np.stack([cover_crop(image, height, width) for image in images]), flips)
            maxima = _maxima(self.score_maps(views), (height, width))
            total = total + maxima.reshape(-1, len(images), maxima.shape[-1]).sum(axis=0)
        return total / (len(sizes) * (2 if flips else 1))
