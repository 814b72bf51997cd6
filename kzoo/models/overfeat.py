"""OverFeat: Sermanet, Eigen, Zhang, Mathieu, Fergus & LeCun 2013, "OverFeat: Integrated
Recognition, Localization and Detection using Convolutional Networks" (Tables 1 and 3).

Differences from the paper:
- The paper's "spatial input size" for layer 2 of the fast model (24) is the
  conv2 output; its input is 28 (231 -> conv1 56 -> pool 28). kzoo checks 24
  on conv2's output.
- The captions say layer 5 has 256 channels; Tables 1/3 and the released
  weights have 1024: we build 1024.
- FC layers are `Dense` on the flattened last map here; the fully
  convolutional form (fc as conv, for dense evaluation) is a conversion of
  these weights. Dropout 0.5 on the first two FC layers.
"""

from kzoo.models.common import variant
from kzoo.models.convnet import FC, Conv, Pool, build_stack
from kzoo.registry import Expected

INIT_STD = 0.01  # §3.1: N(0, 1e-2)

FAST = (  # Table 1: 231x231 input; 3x3 convs keep the size (pad 1); no LRN
    Conv("conv1", 96, 11, 4, pool=Pool(2, 2)),
    Conv("conv2", 256, 5, 1, pool=Pool(2, 2)),
    Conv("conv3", 512, 3, 1, pad=1),
    Conv("conv4", 1024, 3, 1, pad=1),
    Conv("conv5", 1024, 3, 1, pad=1, pool=Pool(2, 2)),
)
FAST_FCS = (FC("fc6", 3072), FC("fc7", 4096))

ACCURATE = (  # Table 3: 221x221 input
    Conv("conv1", 96, 7, 2, pool=Pool(3, 3)),
    Conv("conv2", 256, 7, 1, pool=Pool(2, 2)),
    Conv("conv3", 512, 3, 1, pad=1),
    Conv("conv4", 512, 3, 1, pad=1),
    Conv("conv5", 1024, 3, 1, pad=1),
    Conv("conv6", 1024, 3, 1, pad=1, pool=Pool(3, 3)),
)
ACCURATE_FCS = (FC("fc7", 4096), FC("fc8", 4096))


def _overfeat(inputs, head, convs, fcs, classifier, where, activation):
    return build_stack(inputs, head, convs, fcs, classifier, init_std=INIT_STD, activation=activation, where=where)


OPTIONS_DOC = """
    The classifier is named fc{n}. Layer names follow Table {table}.

    Paper options:
        activation: "relu" (the paper) or "tanh" (AlexNet Fig. 1's comparison),
            after every conv and hidden FC layer; the layers keep the names relu1, ...
"""

overfeat_fast = variant(
    "overfeat_fast",
    _overfeat,
    paper="overfeat",
    section="§3, Table 1",
    default_size=231,
    min_size=71,
    options=dict(activation="relu"),
    convs=FAST,
    fcs=FAST_FCS,
    classifier="fc8",
    where="overfeat_fast",
    expected=Expected(
        params=145_920_872,
        sizes={"input": 231, "conv2": 24, "pool2": 12, "conv3": 12, "conv4": 12, "pool5": 6,
               "flatten": 1, "fc6": 1, "fc7": 1},
        notes=("Table 1 lists 24 as layer 2's input size; it is conv2's output (its input is 28).",
               "FC layers' spatial size 1: the flattened map (1x1 when run as convolutions)."),
    ),
    doc="OverFeat fast model (Sermanet et al. 2013, Table 1)." + OPTIONS_DOC.format(n=8, table=1),
)

overfeat_accurate = variant(
    "overfeat_accurate",
    _overfeat,
    paper="overfeat",
    section="§3, Table 3",
    default_size=221,
    min_size=77,
    options=dict(activation="relu"),
    convs=ACCURATE,
    fcs=ACCURATE_FCS,
    classifier="fc9",
    where="overfeat_accurate",
    expected=Expected(
        params=144_656_488,
        sizes={"input": 221, "pool1": 36, "pool2": 15, "conv3": 15, "conv4": 15, "conv5": 15,
               "pool6": 5, "flatten": 1, "fc7": 1, "fc8": 1},
        notes=("FC layers' spatial size 1: the flattened map (1x1 when run as convolutions).",),
    ),
    doc="OverFeat accurate model (Sermanet et al. 2013, Table 3)." + OPTIONS_DOC.format(n=9, table=3),
)
