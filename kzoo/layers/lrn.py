"""Local response normalization across channels (AlexNet §3.3)."""

import keras
import numpy as np
from keras import ops

from kzoo.utils.values import is_count

# How each code base scales alpha: the paper prints the plain sum over the
# window; cuda-convnet, Caffe and PyTorch divide alpha by n.
CONVENTIONS = {"paper": False, "cuda-convnet": True, "caffe": True, "pytorch": True}


@keras.saving.register_keras_serializable(package="kzoo")
class LocalResponseNormalization(keras.layers.Layer):
    """b_c = a_c / (k + alpha' * sum_{c' in window(c)} a_c'^2) ** beta.

    The window holds the `n` channels centred on c, clipped at the ends.
    `alpha' = alpha` for `convention="paper"` (the formula as printed) and
    `alpha / n` for "cuda-convnet", "caffe" and "pytorch". Caffe's AlexNet
    also uses k=1: pass it explicitly. Channels-last input.
    """

    def __init__(self, n=5, k=2.0, alpha=1e-4, beta=0.75, convention="paper", **kwargs):
        super().__init__(**kwargs)
        if not is_count(n) or n % 2 == 0:
            raise ValueError(f"LocalResponseNormalization: `n` must be a positive odd integer (got {n!r}).")
        if convention not in CONVENTIONS:
            raise ValueError(
                f"LocalResponseNormalization: unknown `convention`={convention!r}; "
                f"expected one of {sorted(CONVENTIONS)}."
            )
        self.n, self.k, self.alpha, self.beta = n, float(k), float(alpha), float(beta)
        self.convention = convention

    @property
    def effective_alpha(self):
        return self.alpha / self.n if CONVENTIONS[self.convention] else self.alpha

    def call(self, inputs):
        # The window sums as one matmul with a 0/1 band matrix, and the power as exp/log:
        # 6-7x faster forward + backward on CPU than summing shifted slices with ops.power
        # (ZFNet at 64 px: lrn1 100 -> 14 ms a step), 2x faster than tf.nn.lrn, any backend.
        channel = np.arange(inputs.shape[-1])
        band = np.abs(channel[:, None] - channel[None, :]) <= self.n // 2
        band = band.astype(keras.backend.standardize_dtype(inputs.dtype))
        window_sum = ops.matmul(ops.square(inputs), band)
        return inputs * ops.exp(-self.beta * ops.log(self.k + self.effective_alpha * window_sum))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "n": self.n,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
            "convention": self.convention,
        }
