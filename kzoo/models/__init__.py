"""One file per paper; importing this registers every builder."""

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

__all__ = [
    "alexnet",
    "zfnet",
    "overfeat_fast",
    "overfeat_accurate",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "plain18",
    "plain34",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "plain110",
]
