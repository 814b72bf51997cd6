"""Local response normalization across channels (AlexNet §3.3)."""

import keras
from keras import ops

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
        if not isinstance(n, int) or n < 1 or n % 2 == 0:
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
        radius = self.n // 2
        squares = ops.square(inputs)
        padded = ops.pad(squares, [(0, 0)] * (len(inputs.shape) - 1) + [(radius, radius)])
        channels = ops.shape(inputs)[-1]
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.n):
            window_sum = window_sum + padded[..., offset : offset + channels]
        return inputs / ops.power(self.k + self.effective_alpha * window_sum, self.beta)

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
