"""One file per paper: alexnet, zfnet, overfeat, resnet (plus the shared convnet stack,
common and features). The builders are `kzoo.alexnet`, `kzoo.resnet50`, ...; each
paper's module is imported, and registers its builders, on first use."""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})
