"""AlexNet: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks" (NIPS 2012).

Differences from the paper:
- conv1 uses cuda-convnet's ceil-mode windows: on the paper's 224x224 input it
  pads 3 zero rows/columns at the bottom/right, giving the 55x55 map the paper
  reports; on Caffe's 227x227 crops it pads nothing (the same 55x55). Floor
  arithmetic on 224 would give 54.
- The two GPUs' halves are explicit towers (`TowerConv2D`) in conv2, conv4 and
  conv5; conv1, conv3 and the FC layers, which the paper connects across GPUs
  or which see the same input on both, are single layers with the same weights
  count.
- `towers=1` is the §3.2 comparison net: half the kernels in conv1-conv4,
  conv5 and the FC layers unchanged (the paper's footnote).
- LRN follows the paper's printed formula (alpha not divided by n); see
  `kzoo.layers.LocalResponseNormalization` for the cuda-convnet/Caffe switch.
- The FC layers are `Dense` on the flattened pool5 map; the classifier's
  softmax is `classifier_activation`.
- `activation="tanh"` is this net with tanh units (relu1..relu7 keep their names);
  Fig. 1 compares the units on a four-layer CIFAR-10 net the paper does not print.
"""

import dataclasses

from kzoo.models.common import variant
from kzoo.models.convnet import FC, Conv, Pool, build_stack, resize_rows
from kzoo.registry import Expected

LRN = dict(n=5, k=2.0, alpha=1e-4, beta=0.75)  # §3.3
# Caffe's bvlc_alexnet: k = 1 (Caffe's default) and alpha divided by the window size
LRN_CONVENTIONS = {"paper": LRN, "caffe": dict(n=5, k=1.0, alpha=1e-4, beta=0.75, convention="caffe")}
INIT_STD = 0.01  # §5: weights N(0, 0.01)

# §3.5 and Fig. 2. name, filters, kernel, stride, pad, split into towers,
# initial bias (§5: 1 in conv2, conv4, conv5, fc6, fc7), LRN (§3.3), max-pool (§3.4).
CONVS = (
    ("conv1", 96, 11, 4, "ceil", False, 0.0, True, True),
    ("conv2", 256, 5, 1, 2, True, 1.0, True, True),
    ("conv3", 384, 3, 1, 1, False, 0.0, False, False),
    ("conv4", 384, 3, 1, 1, True, 1.0, False, False),
    ("conv5", 256, 3, 1, 1, True, 1.0, False, True),
)
FCS = (FC("fc6", 4096, bias=1.0), FC("fc7", 4096, bias=1.0))  # §3.5, dropout 0.5 (§4.2)
# Caffe's bvlc_alexnet (the reference port) starts the paper's 1-biases at 0.1 and
# fc6/fc7 weights at std 0.005; it leaves the initial plateau much sooner. "glorot" is no
# paper's start but Keras' own (Glorot-uniform kernels, zero biases), which learns from
# the first steps (for users who want the architecture, not the 2012 start).
INITS = ("paper", "caffe", "glorot")
CAFFE_BIAS, CAFFE_FC_STD = 0.1, 0.005


ONE_TOWER = ("half", "full")


def alexnet_rows(towers=2, lrn=True, overlapping_pool=True, init="paper", one_tower="half"):
    """The conv rows of the paper's net or of its §3.2-§3.4 comparison nets."""
    if one_tower not in ONE_TOWER:
        raise ValueError(f"alexnet: `one_tower` must be one of {ONE_TOWER}; got {one_tower!r}.")
    if init not in INITS:
        raise ValueError(f"alexnet: `init` must be one of {INITS}; got {init!r}.")
    if towers not in (1, 2):
        raise ValueError(f"alexnet: `towers` must be 2 (the paper's net) or 1 (§3.2 one-tower net); got {towers!r}.")
    for option, value in (("lrn", lrn), ("overlapping_pool", overlapping_pool)):
        if not isinstance(value, bool):
            raise ValueError(f"alexnet: `{option}` must be True or False; got {value!r}.")
    pool = Pool(3, 2) if overlapping_pool else Pool(2, 2)  # §3.4: z=3, s=2 vs z=s=2
    rows = []
    for name, filters, kernel, stride, pad, split, bias, norm, pooled in CONVS:
        if towers == 1 and one_tower == "half" and name != "conv5":
            filters //= 2
        if init == "caffe" and bias:
            bias = CAFFE_BIAS
        if init == "glorot":
            bias = 0.0
        rows.append(
            Conv(name, filters, kernel, stride, pad, towers=towers if split else 1, bias=bias,
                 norm="before_pool" if (norm and lrn) else None, pool=pool if pooled else None)
        )
    return rows


def _alexnet(inputs, head, towers, lrn, overlapping_pool, init, tower_devices, one_tower, remove_layers, fc_units,
             conv_maps, lrn_convention, activation):
    if lrn_convention not in LRN_CONVENTIONS:
        raise ValueError(f"alexnet: `lrn_convention` must be one of {tuple(LRN_CONVENTIONS)}; got {lrn_convention!r}.")
    rows = alexnet_rows(towers, lrn, overlapping_pool, init, one_tower)
    fcs = {"paper": FCS, "caffe": [dataclasses.replace(r, bias=CAFFE_BIAS, std=CAFFE_FC_STD) for r in FCS],
           "glorot": [dataclasses.replace(r, bias=0.0) for r in FCS]}[init]
    rows, fcs = resize_rows(rows, fcs, remove_layers, fc_units, conv_maps, where="alexnet")
    return build_stack(inputs, head, rows, fcs, "fc8", init_std="glorot" if init == "glorot" else INIT_STD,
                       lrn_kwargs=LRN_CONVENTIONS[lrn_convention],
                       tower_devices=tower_devices, activation=activation, where="alexnet")


alexnet = variant(
    "alexnet",
    _alexnet,
    paper="alexnet",
    section="§3.5, Fig. 2",
    default_size=224,
    min_size=64,
    options=dict(towers=2, lrn=True, overlapping_pool=True, init="paper", tower_devices=None, one_tower="half",
                 remove_layers=(), fc_units=None, conv_maps=None, lrn_convention="paper", activation="relu"),
    expected=Expected(
        params=60_965_224,
        sizes={"conv1": 55, "pool1": 27, "conv2": 27, "pool2": 13, "conv3": 13, "conv4": 13,
               "conv5": 13, "pool5": 6},
        neurons={"conv1": 290_400, "conv2": 186_624, "conv3": 64_896, "conv4": 64_896,
                 "conv5": 43_264, "fc6": 4096, "fc7": 4096, "fc8": 1000},
        notes=("conv1 neurons: the paper prints 253,440, a known misprint for 55*55*96 = 290,400.",),
    ),
    doc="""AlexNet (Krizhevsky et al. 2012), the two-tower net of Fig. 2.

    Paper options:
        towers: 2 (conv2/4/5 split into two towers, the paper) or 1 (§3.2's
            one-tower net with half the kernels in conv1-conv4).
        lrn: local response normalization after relu1 and relu2 (§3.3).
        overlapping_pool: 3x3 stride-2 pooling (§3.4) or 2x2 stride 2.
        init: "paper" (§5: N(0, 0.01), biases 1 in conv2/4/5, fc6, fc7),
            "caffe" (bvlc_alexnet: those biases 0.1, fc6/fc7 std 0.005) or
            "glorot" (not a paper's start but Keras' own: Glorot-uniform kernels,
            zero biases). The paper's start sits at chance for the first epochs of
            a plain `model.fit` (SGD 0.01, momentum 0.9, the digits at 64 px: 3
            epochs at 8-9% accuracy); init="glorot" trains the architecture from
            the first steps (56% after one epoch, 87% after three).
        tower_devices: optional device per tower, e.g. ["gpu:0", "gpu:1"].
        one_tower: with towers=1, "half" (§3.2: half the kernels) or "full"
            (all kernels on one device: ZFNet's "AlexNet replication, 1 convnet").
        lrn_convention: "paper" (k=2, alpha as printed) or "caffe" (bvlc_alexnet:
            k=1, alpha divided by n), for weights converted from Caffe.
        activation: "relu" (§3.1) or "tanh" (Fig. 1's saturating units), after
            every conv and hidden FC layer; the layers keep the names relu1..relu7.
    Size ablations (ZFNet Table 2, AlexNet §7): remove_layers (e.g. (3, 4) or (6, 7)),
        fc_units (fc6/fc7 width, paper 4096), conv_maps (conv3-5 filters).
""",
)
