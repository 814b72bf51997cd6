"""Multiply-add counter for kzoo models (any Keras functional model).

Counts what the papers count: the multiply-adds of convolutions and fully
connected layers (ResNet Table 1's "FLOPs" are multiply-adds). Pooling,
normalization, activations and additions are not counted.
"""

import math

import keras

from kzoo.layers import TowerConv2D


def _spatial(shape):
    return math.prod(d for d in shape[1:-1])


def _conv_macs(layer, in_shape, out_shape):
    kernel = math.prod(layer.kernel_size) * in_shape[-1] // getattr(layer, "groups", 1)
    return _spatial(out_shape) * kernel * out_shape[-1]


def _tower_macs(layer, in_shape, out_shape):
    # Each tower sees 1/towers of the channels: a grouped convolution.
    kernel = math.prod(layer.towers[0].kernel_size) * in_shape[-1] // layer.num_towers
    return _spatial(out_shape) * kernel * out_shape[-1]


def _dense_macs(layer, in_shape, out_shape):
    return math.prod(in_shape[1:]) * out_shape[-1]


COUNTERS = (
    (TowerConv2D, _tower_macs),
    (keras.layers.Conv2D, _conv_macs),
    (keras.layers.Conv1D, _conv_macs),
    (keras.layers.Conv3D, _conv_macs),
    (keras.layers.Dense, _dense_macs),
)


def layer_macs(model):
    """{layer name: multiply-adds for one image} for every counted layer of `model`.

    Nested models are expanded (their layers appear as "outer/inner").
    """
    counts = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            counts.update({f"{layer.name}/{k}": v for k, v in layer_macs(layer).items()})
            continue
        for kind, counter in COUNTERS:
            if isinstance(layer, kind):
                in_shape, out_shape = tuple(layer.input.shape), tuple(layer.output.shape)
                if None in in_shape[1:] or None in out_shape[1:]:
                    raise ValueError(
                        f"count_macs: layer '{layer.name}' has an unknown size ({in_shape} -> "
                        f"{out_shape}); build the model with a fixed input_shape."
                    )
                counts[layer.name] = counter(layer, in_shape, out_shape)
                break
    return counts


def count_macs(model):
    """Multiply-adds of one forward pass of one image through `model`."""
    return sum(layer_macs(model).values())
