"""ZFNet: Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks"
(the model of Fig. 3).

Differences from the paper:
- Padding is not stated. conv1 pads 1, conv2 none, conv3-conv5 1 (SPP-net's
  Caffe port), and max-pooling rounds up (Caffe's ceil mode): this is what gives
  Fig. 3's 110 -> 55 -> 26 -> 13 -> 6 exactly (floor rounding gives 54/25/12).
- "Contrast normalization across feature maps" has no constants in the paper:
  AlexNet's LRN (n=5, k=2, alpha=1e-4, beta=0.75), after pooling as in Fig. 3.
- conv3-conv5 are dense (single GPU), fc6/fc7 have dropout 0.5.
- §3's "all weights are initialized to 10^-2" is read as N(0, 0.01) (AlexNet's
  INIT_STD), not a constant; biases start at 0 in every layer, as §3 says.
- Filter renormalization (RMS radius 0.1, §3) is a kernel constraint on every
  conv layer; `filter_radius=None` removes it.
"""

from kzoo.layers import FilterRMSNorm
from kzoo.models.alexnet import FCS, INIT_STD, LRN
from kzoo.models.common import variant
from kzoo.models.convnet import Conv, Pool, build_stack, resize_rows
from kzoo.registry import Expected

POOL = Pool(3, 2, ceil=True)
# Fig. 3: name, filters, kernel, stride, pad; contrast norm after pool in layers 1-2.
CONVS = (
    Conv("conv1", 96, 7, 2, pad=1, norm="after_pool", pool=POOL),
    Conv("conv2", 256, 5, 2, pad=0, norm="after_pool", pool=POOL),
    Conv("conv3", 384, 3, 1, pad=1),
    Conv("conv4", 384, 3, 1, pad=1),
    Conv("conv5", 256, 3, 1, pad=1, pool=POOL),
)


def _zfnet(inputs, head, filter_radius, remove_layers, fc_units, conv_maps, activation):
    constraint = None if filter_radius is None else FilterRMSNorm(filter_radius)
    # §3: biases initialised to 0 (unlike AlexNet's 1s).
    fcs = [type(row)(row.name, row.units, bias=0.0, dropout=row.dropout) for row in FCS]
    convs, fcs = resize_rows(CONVS, fcs, remove_layers, fc_units, conv_maps, where="zfnet")
    return build_stack(inputs, head, convs, fcs, "fc8", init_std=INIT_STD, lrn_kwargs=LRN,
                       filter_constraint=constraint, activation=activation, where="zfnet")


zfnet = variant(
    "zfnet",
    _zfnet,
    paper="zfnet",
    section="§3, Fig. 3",
    default_size=224,
    min_size=47,
    options=dict(filter_radius=0.1, remove_layers=(), fc_units=None, conv_maps=None, activation="relu"),
    expected=Expected(
        params=62_357_608,
        sizes={"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "conv3": 13, "conv4": 13,
               "conv5": 13, "pool5": 6},
    ),
    doc="""ZFNet (Zeiler & Fergus 2013), the model of Fig. 3.

    Paper options:
        filter_radius: renormalize any conv filter whose RMS exceeds this
            radius after each update (§3: 0.1); None disables it.
        activation: "relu" (the paper) or "tanh" (AlexNet Fig. 1's comparison),
            after every conv and hidden FC layer; the layers keep the names relu1..relu7.
    Size ablations (Table 2; the arXiv text's Table 3): remove_layers (e.g. (3, 4),
        (6, 7)), fc_units (fc6/fc7 width, paper 4096), conv_maps (conv3-5 filters,
        e.g. (512, 1024, 512)).
""",
)
