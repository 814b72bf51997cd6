"""Data for the recipes (TensorFlow): sources, the papers' transforms, dataset statistics."""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
