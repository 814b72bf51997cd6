"""AlexNet's two-tower ("grouped") convolution with explicit towers (§3.2, Fig. 2)."""

import keras
from keras import ops

from kzoo.utils.values import is_count


@keras.saving.register_keras_serializable(package="kzoo")
class TowerConv2D(keras.layers.Layer):
    """A convolution split into `towers` independent convolutions.

    The input channels are cut into `towers` equal consecutive groups; tower i
    convolves group i with `filters // towers` filters and the results are
    concatenated in tower order, as in AlexNet's conv2, conv4 and conv5. Each
    tower is a plain `Conv2D` sublayer named `<name>_tower<i>` (reach it with
    `layer.towers[i]`), so weights and visualisations can address one tower.
    `devices` optionally places tower i on `devices[i]` (e.g. "gpu:0", "gpu:1"),
    which is how the paper ran it. No grouped-conv kernel is used, so it runs
    forward and backward on any backend and device, with or without XLA.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        towers=2,
        strides=1,
        padding="valid",
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_constraint=None,
        devices=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not is_count(towers):
            raise ValueError(f"TowerConv2D: `towers` must be a positive integer (got {towers!r}).")
        if filters % towers:
            raise ValueError(f"TowerConv2D: `filters`={filters} is not divisible by `towers`={towers}.")
        if devices is not None and len(devices) != towers:
            raise ValueError(
                f"TowerConv2D: `devices` must name one device per tower ({towers}), got {list(devices)!r}."
            )
        self.filters, self.kernel_size, self.num_towers = filters, kernel_size, towers
        self.strides, self.padding, self.use_bias = strides, padding, use_bias
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.devices = list(devices) if devices is not None else None
        self.towers = [
            keras.layers.Conv2D(
                filters // towers,
                kernel_size,
                strides=strides,
                padding=padding,
                use_bias=use_bias,
                kernel_initializer=_own_copy(self.kernel_initializer),
                bias_initializer=self.bias_initializer,
                kernel_constraint=self.kernel_constraint,
                dtype=self.dtype_policy,
                name=f"{self.name}_tower{i}",
            )
            for i in range(towers)
        ]

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.num_towers:
            raise ValueError(
                f"TowerConv2D '{self.name}': input channels ({channels}) must be known and "
                f"divisible by `towers`={self.num_towers}."
            )
        group_shape = (*input_shape[:-1], channels // self.num_towers)
        for tower in self.towers:
            tower.build(group_shape)

    def call(self, inputs):
        groups = ops.split(inputs, self.num_towers, axis=-1)
        outputs = []
        for i, (tower, group) in enumerate(zip(self.towers, groups)):
            if self.devices is None:
                outputs.append(tower(group))
            else:
                with keras.device(self.devices[i]):
                    outputs.append(tower(group))
        outputs = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        group_shape = (*input_shape[:-1], input_shape[-1] // self.num_towers)
        return (*self.towers[0].compute_output_shape(group_shape)[:-1], self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "towers": self.num_towers,
            "strides": self.strides,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "devices": self.devices,
        }


def _own_copy(initializer):
    # An unseeded Keras initializer repeats its draws on every call: without a copy
    # per tower, all towers would start with the same kernel.
    return initializer.__class__.from_config(initializer.get_config())
