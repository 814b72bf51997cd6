"""The family builder of the 2012-2013 nets: conv rows, then fully connected rows.

AlexNet, ZFNet and OverFeat (and every ablation of them) are lists of `Conv`
and `FC` rows; `build_stack` turns any list into a flat functional graph whose
layer names are the papers' (conv1, relu1, lrn1, pool1, ..., fc6, relu6, drop6).
"""

import dataclasses

import keras

from kzoo.layers import CeilPadding2D, LocalResponseNormalization, TowerConv2D


@dataclasses.dataclass(frozen=True)
class Pool:
    size: int
    stride: int
    ceil: bool = False  # Caffe's ceil rounding (ZFNet); floor otherwise


@dataclasses.dataclass(frozen=True)
class Conv:
    name: str
    filters: int
    kernel: int
    stride: int = 1
    pad: object = 0  # zero rows/cols on each side, or "ceil": cuda-convnet's ceil-mode windows
    towers: int = 1
    bias: float = 0.0  # initial bias value
    norm: str = None  # "before_pool" (AlexNet), "after_pool" (ZFNet) or None
    pool: Pool = None


@dataclasses.dataclass(frozen=True)
class FC:
    name: str
    units: int
    bias: float = 0.0
    dropout: float = 0.5
    std: float = None  # weight init std; None: the net's `init_std`


def _suffix(name):
    return name[len("conv"):] if name.startswith("conv") else name[len("fc"):]


def _conv_block(x, row, kernel_init, constraint, lrn_kwargs, devices):
    i = _suffix(row.name)
    if row.pad == "ceil":
        x = CeilPadding2D(row.kernel, row.stride, name=f"{row.name}_pad")(x)
        padding = "valid"
    elif row.pad and row.stride == 1 and 2 * row.pad == row.kernel - 1:
        padding = "same"
    elif row.pad:
        x = keras.layers.ZeroPadding2D(row.pad, name=f"{row.name}_pad")(x)
        padding = "valid"
    else:
        padding = "valid"
    common = dict(
        strides=row.stride,
        padding=padding,
        kernel_initializer=kernel_init,
        bias_initializer=keras.initializers.Constant(row.bias),
        kernel_constraint=constraint,
        name=row.name,
    )
    if row.towers > 1:
        x = TowerConv2D(row.filters, row.kernel, towers=row.towers, devices=devices, **common)(x)
    else:
        x = keras.layers.Conv2D(row.filters, row.kernel, **common)(x)
    x = keras.layers.ReLU(name=f"relu{i}")(x)
    if row.norm == "before_pool":
        x = LocalResponseNormalization(**lrn_kwargs, name=f"lrn{i}")(x)
    if row.pool is not None:
        p = row.pool
        if p.ceil:
            x = CeilPadding2D(p.size, p.stride, value=float("-inf"), name=f"pool{i}_pad")(x)
        x = keras.layers.MaxPooling2D(p.size, p.stride, padding="valid", name=f"pool{i}")(x)
    if row.norm == "after_pool":
        x = LocalResponseNormalization(**lrn_kwargs, name=f"lrn{i}")(x)
    return x


def build_stack(x, head, convs, fcs, classifier, *, init_std=0.01, classifier_bias=0.0,
                filter_constraint=None, lrn_kwargs=None, tower_devices=None):
    """conv rows -> (flatten -> fc rows -> classifier `classifier`) or the head's pooling."""
    kernel_init = keras.initializers.RandomNormal(stddev=init_std)
    for row in convs:
        x = _conv_block(x, row, kernel_init, filter_constraint, lrn_kwargs or {}, tower_devices)

    def top(x, classes, activation):
        x = keras.layers.Flatten(name="flatten")(x)
        for row in fcs:
            i = _suffix(row.name)
            x = keras.layers.Dense(
                row.units,
                kernel_initializer=kernel_init if row.std is None else keras.initializers.RandomNormal(
                    stddev=row.std),
                bias_initializer=keras.initializers.Constant(row.bias),
                name=row.name,
            )(x)
            x = keras.layers.ReLU(name=f"relu{i}")(x)
            if row.dropout:
                x = keras.layers.Dropout(row.dropout, name=f"drop{i}")(x)
        return keras.layers.Dense(
            classes,
            activation=activation,
            kernel_initializer=kernel_init,
            bias_initializer=keras.initializers.Constant(classifier_bias),
            name=classifier,
        )(x)

    return head.apply(x, top)
