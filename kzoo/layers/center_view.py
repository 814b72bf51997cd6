"""The centre view as the first layer of a model: raw uint8 images in, what the network was
validated on out (kzoo.preprocessing.center_view, in Keras ops), so that a saved `.keras`
file, a SavedModel, an ONNX or a LiteRT file classifies raw images by itself."""

import keras
import numpy as np
from keras import ops

from kzoo.registry import Preprocess


@keras.saving.register_keras_serializable(package="kzoo")
class CenterView(keras.layers.Layer):
    """(N, H, W, 3) raw images, 0-255 (uint8 or float), all of one size but of any size ->
    (N, crop, crop, 3) float32: the shorter side resized to `preprocess`'s evaluation side
    (TensorFlow's antialiased bilinear resize, as two matmuls) and rounded to 8 bits as the
    training pipeline stores it, the centre square where the recipe squares, the mean removed
    (the mean image, else the mean colour), the centre crop, scaled, in the model's channel
    order. The mean (the training images' mean image or colour, 0-255 RGB; `CenterView.of`)
    is a weight of the layer, so saved with the model. Images of unknown size (a SavedModel's
    or an ONNX file's any-size input) get their resize matrices computed in the graph."""

    def __init__(self, preprocess, mean_shape=(3,), **kwargs):
        kwargs.setdefault("dtype", "float32")  # pixels are 0-255: bfloat16 would lose levels
        super().__init__(**kwargs)
        self.preprocess = preprocess if isinstance(preprocess, Preprocess) else Preprocess.from_dict(preprocess)
        self.mean_shape = tuple(mean_shape)
        self.mean = self.add_weight(shape=self.mean_shape, initializer="zeros", trainable=False, name="mean")

    @classmethod
    def of(cls, preprocess, mean, **kwargs):
        """The layer for `preprocess` with its `mean` (as kzoo.preprocessing.base_image uses it)."""
        mean = np.asarray(mean, np.float32)
        if not (preprocess.pixel_mean and mean.ndim == 3):
            mean = mean.reshape(-1, 3).mean(axis=0)  # the mean colour
        layer = cls(preprocess, mean.shape, **kwargs)
        layer.mean.assign(mean)
        return layer

    def get_config(self):
        return {**super().get_config(), "preprocess": self.preprocess.to_dict(), "mean_shape": list(self.mean_shape)}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.preprocess.crop, self.preprocess.crop, 3)

    def call(self, images):
        p = self.preprocess
        x = ops.cast(images, "float32")
        x = ops.clip(ops.round(_resize_shorter(x, p.eval_resize)), 0, 255)
        if p.center:
            x = _center_crop(x, p.center)
        x = _center_crop(x - self.mean, p.crop)
        if p.scale != 1:
            x = x * p.scale
        return ops.flip(x, axis=-1) if p.color == "BGR" else x


def _resize_shorter(x, shorter):
    """(N, H, W, C) -> the shorter side `shorter`, kzoo.preprocessing.resize_shorter's pixels."""
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    if isinstance(height, int) and isinstance(width, int):  # known when traced: constant sizes and matrices
        # kzoo.preprocessing.resized_shape: float32, half to even, as TensorFlow rounds it
        shape = np.array([height, width], np.float32)
        new_h, new_w = (int(v) for v in np.round(shape * (np.float32(shorter) / shape.min())))
    else:
        h, w = ops.cast(height, "float32"), ops.cast(width, "float32")
        factor = shorter / ops.minimum(h, w)
        new_h, new_w = ops.cast(ops.round(h * factor), "int32"), ops.cast(ops.round(w * factor), "int32")
    rows, cols = resize_weights(height, new_h), resize_weights(width, new_w)
    # (N, C, H, W): both resizes are batched matmuls on the last two axes, the matrices broadcast
    # over N and C (a plain 2-D matmul would reshape away several unknown sizes, which LiteRT refuses).
    x = ops.transpose(x, (0, 3, 1, 2))
    x = ops.matmul(ops.matmul(rows[None, None], x), ops.transpose(cols)[None, None])
    return ops.transpose(x, (0, 2, 3, 1))


def resize_weights(in_size, out_size):
    """kzoo.preprocessing.resize_weights (TensorFlow's antialiased bilinear resize along one
    axis, as an (out_size, in_size) matrix) in Keras ops: sizes may be known only when the
    graph runs."""
    f32 = "float32"
    size_in, size_out = ops.cast(in_size, f32), ops.cast(out_size, f32)
    inv_scale = 1.0 / (size_out / size_in)
    kernel_scale = ops.maximum(inv_scale, 1.0)
    centres = (ops.cast(ops.arange(out_size), f32) + 0.5) * inv_scale
    index = ops.cast(ops.arange(in_size), f32)
    distance = ops.abs(index[None, :] + 0.5 - centres[:, None]) * (1.0 / kernel_scale)
    weights = ops.maximum(0.0, 1.0 - distance)
    start = ops.clip(ops.ceil(centres - kernel_scale - 0.5), 0.0, size_in - 1)
    end = ops.clip(ops.floor(centres + kernel_scale - 0.5), 0.0, size_in - 1) + 1
    inside = ops.logical_and(index[None, :] >= start[:, None], index[None, :] < end[:, None])
    weights = weights * ops.cast(inside, f32)
    total = ops.sum(weights, axis=1, keepdims=True)
    return weights / ops.where(total > 0, total, 1.0)


def _center_crop(x, size):
    """The centre size x size window of (N, H, W, C) (offsets rounded down, as in training)."""
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    top, left = (height - size) // 2, (width - size) // 2
    return ops.slice(x, (0, top, left, 0), (ops.shape(x)[0], size, size, ops.shape(x)[3]))
