"""OverFeat's offset max-pooling and its inverse (Sermanet et al. §3.3, Fig. 3)."""

import keras
from keras import ops

from kzoo.utils.values import is_count


def _pair(value, what):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(is_count(v) for v in pair):
        raise ValueError(f"{what} must be a positive integer or a pair of them (got {value!r}).")
    return pair


@keras.saving.register_keras_serializable(package="kzoo")
class OffsetMaxPooling2D(keras.layers.Layer):
    """Non-overlapping max-pooling of size s = stride, once for every offset.

    For each offset (dy, dx) in {0..s-1}^2 the map is pooled starting at row dy,
    column dx. All offsets keep the same number of windows,
    floor((L - s + 1) / s) per axis (the windows every offset has), so the
    s*s pooled maps stack along the batch axis: output[b * s*s + dy * s + dx]
    is image b pooled at offset (dy, dx). Layers after it (the classifier, made
    fully convolutional) treat them as ordinary batch items;
    `InterleaveOffsets` puts their outputs back together.
    """

    def __init__(self, pool_size=3, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "OffsetMaxPooling2D: `pool_size`")

    def _pooled_size(self, length, s):
        return None if length is None else (length - s + 1) // s

    def call(self, inputs):
        sy, sx = self.pool_size
        height, width = inputs.shape[1], inputs.shape[2]
        oh, ow = self._pooled_size(height, sy), self._pooled_size(width, sx)
        if oh is None or ow is None:
            raise ValueError("OffsetMaxPooling2D needs static spatial dimensions.")
        if oh < 1 or ow < 1:
            raise ValueError(
                f"OffsetMaxPooling2D: the {height}x{width} map is too small for pool size "
                f"{self.pool_size} at every offset (needs at least {2 * sy - 1}x{2 * sx - 1})."
            )
        pooled = []
        for dy in range(sy):
            for dx in range(sx):
                window = inputs[:, dy : dy + oh * sy, dx : dx + ow * sx, :]
                pooled.append(ops.max_pool(window, (sy, sx), strides=(sy, sx), padding="valid"))
        stacked = ops.stack(pooled, axis=1)  # (B, sy*sx, oh, ow, C)
        return ops.reshape(stacked, (-1, oh, ow, inputs.shape[-1]))

    def compute_output_shape(self, input_shape):
        sy, sx = self.pool_size
        batch = None if input_shape[0] is None else input_shape[0] * sy * sx
        return (
            batch,
            self._pooled_size(input_shape[1], sy),
            self._pooled_size(input_shape[2], sx),
            input_shape[3],
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="kzoo")
class InterleaveOffsets(keras.layers.Layer):
    """Inverse of `OffsetMaxPooling2D`'s batch stacking: (B*s*s, h, w, K) -> (B, h*s, w*s, K).

    Output position (i*s + dy, j*s + dx) holds the result for offset (dy, dx)
    at position (i, j): the offset outputs interleave into a map with an s
    times finer stride.
    """

    def __init__(self, pool_size=3, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "InterleaveOffsets: `pool_size`")

    def call(self, inputs):
        sy, sx = self.pool_size
        h, w, k = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        grid = ops.reshape(inputs, (-1, sy, sx, h, w, k))
        grid = ops.transpose(grid, (0, 3, 1, 4, 2, 5))  # (B, h, sy, w, sx, K)
        return ops.reshape(grid, (-1, h * sy, w * sx, k))

    def compute_output_shape(self, input_shape):
        sy, sx = self.pool_size
        batch = None if input_shape[0] is None else input_shape[0] // (sy * sx)
        scale = lambda n, s: None if n is None else n * s  # noqa: E731
        return (batch, scale(input_shape[1], sy), scale(input_shape[2], sx), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}
