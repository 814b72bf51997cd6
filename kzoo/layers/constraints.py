"""ZFNet's filter renormalization (Zeiler & Fergus §3)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kzoo")
class FilterRMSNorm(keras.constraints.Constraint):
    """Rescale every filter whose RMS exceeds `radius` to RMS == `radius`.

    A filter is one output channel of a conv kernel (kh, kw, c_in, c_out): its
    RMS is taken over (kh, kw, c_in). Filters at or below the radius are left
    unchanged. Keras applies constraints after each optimizer update.
    """

    def __init__(self, radius=0.1):
        if not radius > 0:
            raise ValueError(f"FilterRMSNorm: `radius` must be > 0 (got {radius!r}).")
        self.radius = float(radius)

    def __call__(self, w):
        axes = tuple(range(len(w.shape) - 1))
        rms = ops.sqrt(ops.mean(ops.square(w), axis=axes, keepdims=True))
        scale = ops.where(rms > self.radius, self.radius / ops.maximum(rms, 1e-12), 1.0)
        return w * ops.cast(scale, w.dtype)

    def get_config(self):
        return {"radius": self.radius}
