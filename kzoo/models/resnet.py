"""ResNet: He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition".

ImageNet nets (Table 1) and the CIFAR-10 nets (§4.2), residual or plain, from
one block function whose options are the paper's: shortcut A/B/C (§3.3),
plain (no shortcut, §4.1) and where the stride of a bottleneck sits.

Differences from the paper:
- Layer names follow keras.applications (conv1_conv, conv2_block1_1_conv,
  conv2_block1_0_conv for a projection, ..., conv5_block3_out); the
  classifier is `fc`.
- Stride-2 3x3 convolutions pad 1 on every side (Caffe/torchvision); stride-1
  ones use "same" (identical).
- BatchNorm: epsilon 1e-5, momentum 0.9 (the paper states neither).
- Convolutions have no bias (BN follows). He init (§3.4, [13]): N(0, 2/fan_in)
  on convolutions; the classifier keeps Keras' default initializer.
- Option A pads the new channels with zeros after the existing ones and
  subsamples by taking every second row and column.
"""

import keras

from kzoo.layers import BatchNormalization, ZeroPadShortcut
from kzoo.models.common import variant
from kzoo.registry import Expected

# Table 1: block type and blocks per stage; stage widths 64/128/256/512, x4 out for bottlenecks.
IMAGENET = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)  # §4.2: 6n+2 layers, n blocks of two 3x3 convs per stage
SHORTCUTS = ("A", "B", "C")
STRIDE_PLACEMENTS = ("v1", "v1.5")  # stride on the bottleneck's 1x1 (paper) or its 3x3 (torchvision)
BN = dict(epsilon=1e-5, momentum=0.9)


def he_init():
    # A new instance per layer, made at build time: an unseeded initializer made at
    # import time would draw its seed before keras.utils.set_random_seed runs.
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _conv_bn(x, filters, kernel, stride, name, relu=True):
    if stride > 1 and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            kernel_initializer=he_init(), name=f"{name}_conv")(x)
    x = BatchNormalization(**BN, name=f"{name}_bn")(x)  # folded into the conv in compiled inference
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def block(x, width, stride, name, *, kind="basic", shortcut="B", stride_placement="v1", plain=False):
    """One residual (or plain) block: basic = 3x3, 3x3; bottleneck = 1x1, 3x3, 1x1 (x4 out)."""
    if kind == "basic":
        convs = [(width, 3, stride), (width, 3, 1)]
    else:
        s1, s3 = (stride, 1) if stride_placement == "v1" else (1, stride)
        convs = [(width, 1, s1), (width, 3, s3), (4 * width, 1, 1)]
    out_channels = convs[-1][0]
    y = x
    for i, (filters, kernel, s) in enumerate(convs, start=1):
        y = _conv_bn(y, filters, kernel, s, f"{name}_{i}", relu=i < len(convs))
    if not plain:
        changes = stride != 1 or x.shape[-1] != out_channels
        if shortcut == "C" or (shortcut == "B" and changes):
            x = _conv_bn(x, out_channels, 1, stride, f"{name}_0", relu=False)
        elif changes:
            x = ZeroPadShortcut(out_channels, stride, name=f"{name}_0_pad")(x)
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _check(shortcut, stride_placement, plain, name):
    if shortcut not in SHORTCUTS:
        raise ValueError(f"{name}: `shortcut` must be one of {SHORTCUTS} (He et al. §3.3); got {shortcut!r}.")
    if stride_placement not in STRIDE_PLACEMENTS:
        raise ValueError(f"{name}: `stride_placement` must be one of {STRIDE_PLACEMENTS}; got {stride_placement!r}.")
    if not isinstance(plain, bool):
        raise ValueError(f"{name}: `plain` must be True or False; got {plain!r}.")


def _classifier(x, classes, activation):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.layers.Dense(classes, activation=activation, name="fc")(x)


def _stages(x, kind, blocks, widths, **options):
    for stage, (count, width) in enumerate(zip(blocks, widths)):
        for b in range(count):
            stride = 2 if (b == 0 and stage > 0) else 1
            x = block(x, width, stride, f"conv{stage + 2}_block{b + 1}", kind=kind, **options)
    return x


def _resnet_imagenet(inputs, head, depth, plain, shortcut="B", stride_placement="v1"):
    _check(shortcut, stride_placement, plain, f"resnet{depth}")
    kind, blocks = IMAGENET[depth]
    x = _conv_bn(inputs, 64, 7, 2, "conv1")
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)  # after ReLU, so 0-padding == -inf padding
    x = keras.layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    x = _stages(x, kind, blocks, IMAGENET_WIDTHS, shortcut=shortcut,
                stride_placement=stride_placement, plain=plain)
    return head.apply(x, _classifier)


def _resnet_cifar(inputs, head, n, plain, shortcut="A"):
    _check(shortcut, "v1", plain, f"resnet{6 * n + 2}")
    x = _conv_bn(inputs, 16, 3, 1, "conv1")
    x = _stages(x, "basic", (n, n, n), CIFAR_WIDTHS, shortcut=shortcut, plain=plain)
    return head.apply(x, _classifier)


def _imagenet_sizes(blocks):
    sizes = {"conv1_relu": 112, "pool1_pool": 56}
    for stage, (count, size) in enumerate(zip(blocks, (56, 28, 14, 7))):
        sizes[f"conv{stage + 2}_block{count}_out"] = size
    return sizes


def _cifar_sizes(n):
    sizes = {"conv1_relu": 32}
    for stage, size in enumerate((32, 16, 8)):
        sizes[f"conv{stage + 2}_block{n}_out"] = size
    return sizes


# (depth, trainable params with option B, paper mult-adds), Table 1 / SPEC §4.
IMAGENET_ROWS = (
    (18, 11_689_512, 1.8e9),
    (34, 21_797_672, 3.6e9),
    (50, 25_557_032, 3.8e9),
    (101, 44_549_160, 7.6e9),
    (152, 60_192_808, 11.3e9),
)
# (n, trainable params with option A), §4.2 / SPEC §4; depth = 6n + 2.
CIFAR_ROWS = ((3, 269_722), (5, 464_154), (7, 658_586), (9, 853_018), (18, 1_727_962), (200, 19_421_274))
# §4.1 compares plain-18/34 with ResNet-18/34. Their trainable params (derived):
# option B minus the three projection shortcuts (173,824 params).
PLAIN_IMAGENET = {18: 11_515_688, 34: 21_623_848}
# Fig. 6: plain-20/32/44/56/110; option A shortcuts have no parameters, so a
# plain CIFAR net has its ResNet's trainable parameter count.
PLAIN_CIFAR = (3, 5, 7, 9, 18)

IMAGENET_DOC = """ResNet-{depth}{plain} for ImageNet (He et al. 2015, Table 1).

    Paper options:
        shortcut: "A" zero-padding identity, "B" projections where dimensions
            change (default), "C" projections everywhere (§3.3).
        stride_placement: "v1" stride 2 on the bottleneck's first 1x1 (the
            paper's released models) or "v1.5" on its 3x3 (torchvision).
"""
CIFAR_DOC = """ResNet-{depth}{plain} for CIFAR-10 (He et al. 2015, §4.2): n={n}, 6n+2 layers.

    Paper options:
        shortcut: "A" (the paper's CIFAR nets, default), "B" or "C" (§3.3).
"""


def _register():
    exports = {}
    for depth, params, macs in IMAGENET_ROWS:
        blocks = IMAGENET[depth][1]
        for plain in (False, True) if depth in PLAIN_IMAGENET else (False,):
            name = f"{'plain' if plain else 'resnet'}{depth}"
            options = dict(stride_placement="v1") if plain else dict(shortcut="B", stride_placement="v1")
            exports[name] = variant(
                name, _resnet_imagenet, paper="resnet", section="§3.4, Table 1", default_size=224,
                min_size=32, options=options, flat_head=False, depth=depth, plain=plain,
                expected=Expected(
                    params=PLAIN_IMAGENET[depth] if plain else params, sizes=_imagenet_sizes(blocks),
                    macs=macs,
                    notes=(f"Parameters derived: ResNet-{depth} (option B) minus its three projections.",)
                    if plain else (),
                ),
                doc=IMAGENET_DOC.format(depth=depth, plain=" (plain)" if plain else ""),
            )
    for n, params in CIFAR_ROWS:
        for plain in (False, True) if n in PLAIN_CIFAR else (False,):
            name = f"{'plain' if plain else 'resnet'}{6 * n + 2}"
            exports[name] = variant(
                name, _resnet_cifar, paper="resnet", pipeline="resnet_cifar", section="§4.2", default_size=32, min_size=8,
                classes=10, options={} if plain else dict(shortcut="A"), flat_head=False, n=n,
                plain=plain, expected=Expected(
                    params=params, sizes=_cifar_sizes(n),
                    notes=("Parameters derived: option A shortcuts have none, so the plain net "
                           "has its ResNet's count.",) if plain else (),
                ),
                doc=CIFAR_DOC.format(depth=6 * n + 2, n=n, plain=" (plain)" if plain else ""),
            )
    return exports


_BUILDERS = _register()
resnet18 = _BUILDERS["resnet18"]
resnet34 = _BUILDERS["resnet34"]
resnet50 = _BUILDERS["resnet50"]
resnet101 = _BUILDERS["resnet101"]
resnet152 = _BUILDERS["resnet152"]
plain18 = _BUILDERS["plain18"]
plain34 = _BUILDERS["plain34"]
resnet20 = _BUILDERS["resnet20"]
resnet32 = _BUILDERS["resnet32"]
resnet44 = _BUILDERS["resnet44"]
resnet56 = _BUILDERS["resnet56"]
resnet110 = _BUILDERS["resnet110"]
resnet1202 = _BUILDERS["resnet1202"]
plain20 = _BUILDERS["plain20"]
plain32 = _BUILDERS["plain32"]
plain44 = _BUILDERS["plain44"]
plain56 = _BUILDERS["plain56"]
plain110 = _BUILDERS["plain110"]
