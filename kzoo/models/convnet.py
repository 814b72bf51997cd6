"""The family builder of the 2012-2013 nets: conv rows, then fully connected rows.

AlexNet, ZFNet and OverFeat (and every ablation of them) are lists of `Conv`
and `FC` rows; `build_stack` turns any list into a flat functional graph whose
layer names are the papers' (conv1, relu1, lrn1, pool1, ..., fc6, relu6, drop6).

`activation="tanh"` (AlexNet Fig. 1's saturating comparison net) swaps every conv and
hidden FC ReLU for tanh; those layers keep their names relu1, relu2, ...: the names are
addresses (feature extraction, per-layer transfer, ablations), so one name reaches the
same place in a ReLU and a tanh net (a `ReLU` layer in one, an `Activation("tanh")` in the other).
"""

import dataclasses

import keras

from kzoo.layers import CeilPadding2D, LocalResponseNormalization, TowerConv2D
from kzoo.utils.values import is_count


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


ACTIVATIONS = ("relu", "tanh")  # AlexNet §3.1, Fig. 1: the ReLU and the saturating unit it replaced


def check_activation(activation, where):
    if activation not in ACTIVATIONS:
        raise ValueError(f"{where}: `activation` must be one of {ACTIVATIONS} (AlexNet §3.1, Fig. 1); "
                         f"got {activation!r}.")
    return activation


def _activation(x, activation, i):
    # Named relu{i} whatever the function: the layer's address (see the module docstring).
    if activation == "relu":
        return keras.layers.ReLU(name=f"relu{i}")(x)
    return keras.layers.Activation(activation, name=f"relu{i}")(x)


def resize_rows(convs, fcs, remove_layers=(), fc_units=None, conv_maps=None, where="convnet"):
    """The size ablations of ZFNet Table 2 and AlexNet §7 as new rows: drop layers by
    number (3, 4 = conv3, conv4; 6, 7 = fc6, fc7), set the hidden FC width, set the
    filters of conv3, conv4, conv5. A removed conv's pooling moves to the layer below."""
    convs, fcs = list(convs), list(fcs)
    numbers = [int(_suffix(r.name)) for r in convs + fcs]
    for key, value, example in (("remove_layers", remove_layers, "(3,) or (3, 4)"),
                                ("conv_maps", conv_maps, "(512, 1024, 512)")):
        if value is not None and not isinstance(value, (tuple, list)):  # one number is not a tuple of them
            raise ValueError(f"{where}: `{key}` must be a tuple, e.g. {example}; got {value!r}.")
    bad = [n for n in remove_layers if n not in numbers or n == numbers[0]]
    if bad:
        raise ValueError(f"{where}: `remove_layers` {tuple(remove_layers)}: no removable layer {bad}; "
                         f"layers are numbered {numbers[1:]} (conv{numbers[1]}.., fc..).")
    if conv_maps is not None:
        conv_maps = tuple(conv_maps)
        if len(conv_maps) != 3 or not all(is_count(m) for m in conv_maps):
            raise ValueError(f"{where}: `conv_maps` must be 3 positive filter counts for conv3, conv4, conv5; "
                             f"got {conv_maps!r}.")
        convs = [dataclasses.replace(r, filters=conv_maps[int(_suffix(r.name)) - 3]) if r.name in
                 ("conv3", "conv4", "conv5") else r for r in convs]
    if fc_units is not None:
        if not is_count(fc_units):
            raise ValueError(f"{where}: `fc_units` must be a positive integer; got {fc_units!r}.")
        fcs = [dataclasses.replace(r, units=fc_units) for r in fcs]
    kept = []
    for row in convs:
        if int(_suffix(row.name)) in remove_layers:
            if row.pool is not None:  # keep the downsampling: the map sizes of the rest stay
                if kept[-1].pool is not None:
                    raise ValueError(f"{where}: removing {row.name} would drop its pooling ({kept[-1].name} "
                                     f"pools already).")
                kept[-1] = dataclasses.replace(kept[-1], pool=row.pool)
            continue
        kept.append(row)
    return kept, [r for r in fcs if int(_suffix(r.name)) not in remove_layers]


def _suffix(name):
    return name[len("conv"):] if name.startswith("conv") else name[len("fc"):]


def _conv_block(x, row, kernel_init, constraint, lrn_kwargs, devices, activation):
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
    x = _activation(x, activation, i)
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
                filter_constraint=None, lrn_kwargs=None, tower_devices=None, activation="relu", where="convnet"):
    """conv rows -> (flatten -> fc rows -> classifier `classifier`) or the head's pooling.
    `activation` ("relu" or "tanh") follows every conv and hidden FC layer, not the classifier.
    `init_std` "glorot": Keras' own default kernels (Glorot & Bengio's uniform), rows' stds ignored."""
    check_activation(activation, where)

    def kernel_init(std=init_std):
        # One instance per layer: an unseeded Keras initializer repeats the same draws on
        # every call, so a shared one would start every kernel as a prefix of one stream.
        if init_std == "glorot":
            return keras.initializers.GlorotUniform()
        return keras.initializers.RandomNormal(stddev=std)

    for row in convs:
        x = _conv_block(x, row, kernel_init(), filter_constraint, lrn_kwargs or {}, tower_devices, activation)

    def top(x, classes, classifier_activation):
        x = keras.layers.Flatten(name="flatten")(x)
        for row in fcs:
            i = _suffix(row.name)
            x = keras.layers.Dense(
                row.units,
                kernel_initializer=kernel_init() if row.std is None else kernel_init(row.std),
                bias_initializer=keras.initializers.Constant(row.bias),
                name=row.name,
            )(x)
            x = _activation(x, activation, i)
            if row.dropout:
                x = keras.layers.Dropout(row.dropout, name=f"drop{i}")(x)
        return keras.layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=kernel_init(),
            bias_initializer=keras.initializers.Constant(classifier_bias),
            name=classifier,
        )(x)

    return head.apply(x, top)
