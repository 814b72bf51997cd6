"""The one list of kzoo models: name -> builder, input sizes, the papers' numbers, weights.

Builders, `create_model`, the docs generator, the tests and (later) the weights
manifest and the tuner studies all read this registry.
"""

import dataclasses
import difflib
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

# The public builders, in list_models() order; kzoo and kzoo.models export these names.
BUILDER_NAMES = (
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
)


def register(entry):
    if entry.name in _REGISTRY:
        raise ValueError(f"Model '{entry.name}' is registered twice.")
    _REGISTRY[entry.name] = entry
    return entry


def _load_models():
    import kzoo.models  # noqa: F401  (registers every builder)


def list_models(paper=None):
    """Names of every registered model, optionally only one paper's."""
    _load_models()
    return [name for name, entry in _REGISTRY.items() if paper is None or entry.paper == paper]


def get_entry(name):
    _load_models()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown model name {name!r}.{hint} Known models: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def create_model(name, **kwargs):
    """Build a registered model by name: `create_model("resnet50", classes=10)`."""
    return get_entry(name).builder(**kwargs)
