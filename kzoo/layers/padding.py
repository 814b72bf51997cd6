"""Padding layers: Caffe/cuda-convnet "ceil mode" windows, and ResNet's option-A shortcut."""

import keras
from keras import ops


def ceil_mode_output(length, kernel, stride, pad=0):
    """Windows a ceil-mode op (cuda-convnet convolutions, Caffe pooling) produces.

    1 + ceil((L + 2p - k) / s), minus the last window if it would start in the
    end padding (Caffe's rule), where floor mode gives 1 + floor(...).
    """
    out = -(-(length + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= length + pad:
        out -= 1
    return out


@keras.saving.register_keras_serializable(package="kzoo")
class CeilPadding2D(keras.layers.Layer):
    """Pad so that a following "valid" op of (kernel_size, strides) works in ceil mode.

    Pads `padding` rows/columns before and as many as the last, partial window
    needs after (Caffe's rule decides whether that window exists), filled with `value`: 0 before a
    convolution, -inf before max-pooling (a padded value then never wins).
    Reproduces cuda-convnet's AlexNet conv1 on 224 inputs (pads 3 after) and
    Caffe's ceil-rounded pooling (ZFNet's 110 -> 55 -> ... -> 6).
    """

    def __init__(self, kernel_size, strides, padding=0, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.strides, self.padding = int(kernel_size), int(strides), int(padding)
        self.value = float(value)

    def _end_pad(self, length):
        out = ceil_mode_output(length, self.kernel_size, self.strides, self.padding)
        return max((out - 1) * self.strides + self.kernel_size - length - self.padding, 0)

    def _dynamic_end_pad(self, length):
        # The same arithmetic on a symbolic size (inputs of unknown height/width).
        k, s, p = self.kernel_size, self.strides, self.padding
        out = (length + 2 * p - k + s - 1) // s + 1
        out = out - ops.cast((out - 1) * s >= length + p, "int32") * int(p > 0)
        return ops.maximum((out - 1) * s + k - length - p, 0)

    def call(self, inputs):
        shape = ops.shape(inputs)
        p = self.padding
        widths = [(0, 0), (0, 0), (0, 0), (0, 0)]
        for axis in (1, 2):
            length = inputs.shape[axis]
            end = self._end_pad(length) if length is not None else self._dynamic_end_pad(shape[axis])
            widths[axis] = (p, end)
        return ops.pad(inputs, widths, constant_values=self.value)

    def compute_output_shape(self, input_shape):
        def padded(length):
            return None if length is None else length + self.padding + self._end_pad(length)

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "value": self.value,
        }


@keras.saving.register_keras_serializable(package="kzoo")
class ZeroPadShortcut(keras.layers.Layer):
    """ResNet's parameter-free shortcut (option A, He et al. §3.3).

    Subsamples by `strides` (keeps every s-th row and column, as a 1x1
    stride-s window does) and appends zero channels up to `filters`.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = int(filters), int(strides)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra < 0:
            raise ValueError(
                f"ZeroPadShortcut '{self.name}': cannot shrink {inputs.shape[-1]} channels to {self.filters}."
            )
        return ops.pad(x, [(0, 0), (0, 0), (0, 0), (0, extra)]) if extra else x

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.strides)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
