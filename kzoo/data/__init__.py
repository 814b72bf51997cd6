"""Data for the recipes (TensorFlow): sources, the papers' transforms, dataset statistics,
and near-duplicates between two image collections (overlap, ZFNet §5.2)."""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
