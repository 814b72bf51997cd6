"""The one list of kzoo models: name -> builder, input sizes, the papers' numbers, and the
inference contract: the `Preprocess` record and the pipeline each model is trained and
evaluated with (its paper's, PIPELINES) and, for registered weights, their own preprocessing, mean
and class names (kzoo.weights' manifest), as timm's pretrained_cfg states them.

Builders, `create_model`, `kzoo.load`, the recipes, the docs generator and the tests read it.
"""

import dataclasses
import difflib
import importlib
from typing import Callable

import kzoo  # kzoo.weights (the manifest) when weights are asked for


CROPS = ("random", "ten")  # Preprocess.crops: where training crops are cut


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """One paper's preprocessing; sizes in pixels.

    resize: shorter side after resizing; a (low, high) pair draws it at random
        per training image (ResNet's scale augmentation); evaluation uses low.
    center: centre square kept after resizing (AlexNet/ZFNet's 256x256), or None.
    crop: training crop (random) and evaluation crop (centre).
    crops: where training crops are cut: "random" (any position) or "ten" (ZFNet §3's
        fixed sub-crops: one of the 4 corners and the centre at random, flipped as `flip`
        says; the windows of `ten_crops`, the evaluation's 10 views).
    pad: zero padding before the random crop (CIFAR's 4).
    flip: random horizontal flips.
    pca: std of AlexNet's PCA colour noise alpha (0.1), or 0.
    mean: "pixel" (the mean image of the `center` squares) or "channel" (the
        mean colour; used whenever images differ in size).
    color: channel order the model takes ("RGB"; "BGR" for Caffe's weights).
    scale: factor applied to the mean-free pixels (1: the papers' 0-255 range).
    """

    resize: object
    crop: int
    center: int = None
    pad: int = 0
    flip: bool = True
    pca: float = 0.0
    mean: str = "pixel"
    color: str = "RGB"
    scale: float = 1.0
    crops: str = "random"

    def __post_init__(self):
        if isinstance(self.resize, list):  # from JSON
            object.__setattr__(self, "resize", tuple(self.resize))
        if self.mean not in ("pixel", "channel"):
            raise ValueError(f"Preprocess mean must be 'pixel' or 'channel', got {self.mean!r}.")
        if self.color not in ("RGB", "BGR"):
            raise ValueError(f"Preprocess color must be 'RGB' or 'BGR', got {self.color!r}.")
        if self.crops not in CROPS:
            raise ValueError(f"Preprocess crops must be one of {CROPS}, got {self.crops!r}.")

    @property
    def pixel_mean(self):
        """A mean image needs images of one size: a fixed resize and a centre square."""
        return self.mean == "pixel" and self.center is not None and not isinstance(self.resize, tuple)

    @property
    def eval_resize(self):
        """The shorter side evaluation resizes to (the low end of a random range)."""
        return self.resize[0] if isinstance(self.resize, tuple) else self.resize

    def scaled(self, crop):
        """The same pipeline for a smaller model input (demo and smoke runs)."""
        ratio = crop / self.crop
        resize = tuple(max(crop, round(r * ratio)) for r in self.resize) if isinstance(
            self.resize, tuple) else max(crop, round(self.resize * ratio))
        center = None if self.center is None else max(crop, round(self.center * ratio))
        return dataclasses.replace(self, resize=resize, crop=crop, center=center,
                                   pad=round(self.pad * ratio))

    def to_dict(self):
        """The JSON record (config.json, manifest.json)."""
        record = dataclasses.asdict(self)
        if isinstance(self.resize, tuple):
            record["resize"] = list(self.resize)
        if self.crops == "random":  # the default: records (and the keys made of them) read as before the option
            del record["crops"]
        return record

    @classmethod
    def from_dict(cls, record, where="preprocess record"):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown or "resize" not in record or "crop" not in record:
            raise ValueError(f"{where}: not a kzoo Preprocess record ({record}); expected the keys "
                             f"{sorted(known)} (resize and crop required).")
        return cls(**record)


# Each paper's pipeline, stated once: its models' registry entries (`ModelEntry.preprocess`),
# its recipe, and `kzoo.load` of random or foreign weights all read it from here.
PIPELINES = {
    "alexnet": Preprocess(resize=256, center=256, crop=224, flip=True, pca=0.1, mean="pixel"),  # §2, §4.1
    "zfnet": Preprocess(resize=256, center=256, crop=224, flip=True, mean="pixel"),  # §3
    "overfeat": Preprocess(resize=256, crop=231, flip=True, mean="channel"),  # §3.1; 221 for the accurate model
    "resnet": Preprocess(resize=(256, 480), crop=224, flip=True, pca=0.1, mean="channel"),  # §3.4
    "resnet_cifar": Preprocess(resize=32, center=32, crop=32, pad=4, flip=True, mean="pixel"),  # §4.2
}


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
    preprocess: object = None  # a Preprocess of PIPELINES: the paper's pipeline, its crop the paper's

    def preprocess_at(self, size=None, shrink=None):
        """The pipeline at input `size` (default: the model's own): the paper's, with `size` as its
        crop; `shrink` (default: when `size` is not the model's own, as kzoo.load and the demos
        do): the whole pipeline scaled with the input."""
        size = self.default_size if size is None else size
        shrink = size != self.default_size if shrink is None else shrink
        return self.preprocess.scaled(size) if shrink else dataclasses.replace(self.preprocess, crop=size)

    @property
    def weights(self):
        """The names of this model's registered weights (kzoo.weights' manifest)."""
        return kzoo.weights.names(self.name)


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
PAPERS = ("alexnet", "zfnet", "overfeat", "resnet")


def register(entry):
    if entry.name in _REGISTRY:
        raise ValueError(f"Model '{entry.name}' is registered twice.")
    _REGISTRY[entry.name] = entry
    return entry


def _load(names):
    # The model modules register into this one, so they are imported by name, not at the top.
    for module in dict.fromkeys(BUILDER_MODULES[name] for name in names):
        importlib.import_module(module)


def list_models(paper=None, pretrained=False):
    """Names of every registered model, optionally only one paper's; `pretrained`: only those
    with registered weights (`kzoo.load(name, weights=...)`, `get_entry(name).weights`)."""
    if paper is not None and paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {', '.join(PAPERS)}.")
    _load(BUILDER_NAMES)
    return [name for name in BUILDER_NAMES if (paper is None or _REGISTRY[name].paper == paper)
            and (not pretrained or _REGISTRY[name].weights)]


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
