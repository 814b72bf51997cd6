"""Batch normalization at the speed of the kernels under it, on TensorFlow. In a compiled
inference graph it is folded into the convolution before it: one convolution with a
rescaled kernel and a bias instead of a convolution and four elementwise passes (in
bfloat16, two float32 casts more). In training it is TensorFlow's fused kernel (oneDNN's
on CPUs), which takes bfloat16 in and keeps its statistics in float32, where Keras' layer
casts to float32 and back around five elementwise passes. ResNet-50 at batch 16 on an AMX
CPU: inference 3.3x float32's in bfloat16 (1.35x with Keras' layer), training 1.6x
(1.2x) (docs/performance.md)."""

import keras
from keras import ops
from keras.src.backend import AutocastScope  # Keras' own switch: the kernel's float32 value under a mixed policy


def _convolution_input(y):
    """The input of the convolution op that computed `y` inside a tf.function, else None
    (eager, another backend, or `y` made by another op): folding then has nothing to fold."""
    if keras.backend.backend() != "tensorflow":
        return None  # XLA (jax.jit, jit_compile) fuses a batch norm into its convolution by itself
    import tensorflow as tf

    op = None if tf.executing_eagerly() else getattr(y, "op", None)
    if op is not None and op.type in ("AddV2", "BiasAdd"):  # the Conv2D layer's bias
        op = op.inputs[0].op
    return op.inputs[0] if op is not None and op.type == "Conv2D" else None


@keras.saving.register_keras_serializable(package="kzoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization that folds into the Conv2D whose output it normalizes:
    in inference inside a tf.function (model.predict, evaluate, export) it convolves that
    Conv2D's input with kernel * gamma / sqrt(var + eps) and adds (bias - mean) * that + beta,
    and the unfolded convolution, which nothing reads then, is pruned from the graph. Equal
    to float32 rounding in float32; in bfloat16 the folded kernel is rounded once. Training,
    eager calls and other backends normalize as Keras does. Its weights, the graph and the
    Conv2D's output are those of Keras' layer, whose name it keeps: Keras 3 keys a
    .weights.h5 file's arrays by class name, so files written with either load into the other."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = None  # linked when called on a Conv2D's output (also when a saved model is rebuilt)

    def __call__(self, inputs, *args, **kwargs):
        source = getattr(getattr(inputs, "_keras_history", None), "operation", None)
        if self.conv is None and isinstance(source, keras.layers.Conv2D) and self.axis in (-1, 3):
            object.__setattr__(self, "conv", source)  # not tracked: its weights stay the conv's
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and self._fusable(inputs, mask):
            return self._fused_training(inputs)
        x = None if (training and self.trainable) or self.conv is None else _convolution_input(inputs)
        if x is None:
            return super().call(inputs, training=training, mask=mask)
        with AutocastScope(None):  # the fold in float32, rounded once to the compute dtype
            scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
            kernel = ops.cast(self.conv.kernel * scale, x.dtype)
            bias = self.beta - self.moving_mean * scale
            if self.conv.use_bias:
                bias = bias + self.conv.bias * scale
        return ops.add(self.conv.convolution_op(x, kernel), ops.cast(bias, inputs.dtype))

    def _fusable(self, inputs, mask):
        """Whether TensorFlow's fused kernel computes what Keras' layer does here: channels
        last of a 4-D input, no mask, renormalization or cross-replica statistics."""
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.center and self.scale and not self.renorm
                and not getattr(self, "synchronized", False))

    def _fused_training(self, inputs):
        """The batch's normalization and the moving statistics' update, as Keras' layer makes
        them (biased batch variance; moving = momentum * moving + (1 - momentum) * batch)."""
        import tensorflow as tf

        with AutocastScope(None):
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta), epsilon=self.epsilon,
                is_training=True)[:3]
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # the kernel returns it Bessel-corrected
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return y
