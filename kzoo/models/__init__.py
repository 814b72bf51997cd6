"""One file per paper; importing this registers every builder."""

from kzoo.registry import BUILDER_NAMES  # isort: skip
from kzoo.models.alexnet import alexnet  # isort: skip  (import order = list_models() order)
from kzoo.models.zfnet import zfnet  # isort: skip
from kzoo.models.overfeat import overfeat_accurate, overfeat_fast
from kzoo.models.resnet import (
    plain18,
    plain20,
    plain32,
    plain34,
    plain44,
    plain56,
    plain110,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
    resnet1202,
)

__all__ = list(BUILDER_NAMES)
