"""The one list of kzoo models: name -> builder, input sizes, the papers' numbers, weights.

Builders, `create_model`, the docs generator, the tests and (later) the weights
manifest and the tuner studies all read this registry.
"""

import dataclasses
import difflib
import importlib
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Expected:
    """Numbers a model must reproduce (SPEC), with the source of each.

    `sizes` maps a kzoo layer name to the paper's spatial size of that layer's
    output; `neurons` maps a layer name to the paper's neuron count;
    `macs` is the paper's multiply-add count (None where the paper gives none).
    `notes` explains any place where the paper's own table says otherwise.
    """

    params: int
    sizes: dict = dataclasses.field(default_factory=dict)
    neurons: dict = dataclasses.field(default_factory=dict)
    macs: float = None
    notes: tuple = ()


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable
    paper: str  # "alexnet" | "zfnet" | "overfeat" | "resnet"
    section: str  # where the paper defines it
    default_size: int
    min_size: int
    default_classes: int
    expected: Expected
    weights: dict = dataclasses.field(default_factory=dict)  # weights name -> manifest entry


_REGISTRY = {}

# The public builders, in list_models() order, each with the module that defines it
# (imported on first use: kzoo.resnet50 loads no AlexNet).
BUILDER_MODULES = {
    "alexnet": "kzoo.models.alexnet",
    "zfnet": "kzoo.models.zfnet",
    "overfeat_fast": "kzoo.models.overfeat",
    "overfeat_accurate": "kzoo.models.overfeat",
    **dict.fromkeys(("resnet18", "plain18", "resnet34", "plain34", "resnet50", "resnet101", "resnet152",
                     "resnet20", "plain20", "resnet32", "plain32", "resnet44", "plain44", "resnet56", "plain56",
                     "resnet110", "plain110", "resnet1202"), "kzoo.models.resnet"),
}
BUILDER_NAMES = tuple(BUILDER_MODULES)


def register(entry):
    if entry.name in _REGISTRY:
        raise ValueError(f"Model '{entry.name}' is registered twice.")
    _REGISTRY[entry.name] = entry
    return entry


def _load(names):
    # The model modules register into this one, so they are imported by name, not at the top.
    for module in dict.fromkeys(BUILDER_MODULES[name] for name in names):
        importlib.import_module(module)


def list_models(paper=None):
    """Names of every registered model, optionally only one paper's."""
    _load(BUILDER_NAMES)
    return [name for name in BUILDER_NAMES if paper is None or _REGISTRY[name].paper == paper]


def get_entry(name):
    if name not in _REGISTRY:
        _load([name] if name in BUILDER_MODULES else BUILDER_NAMES)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), BUILDER_NAMES, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown model name {name!r}.{hint} Known models: {', '.join(BUILDER_NAMES)}.")
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Build a registered model by name: `create_model("resnet50", classes=10)`."""
    return get_entry(name).builder(**kwargs)
