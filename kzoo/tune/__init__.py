"""keras-tuner hypermodels for the papers' architecture studies (`python -m kzoo.recipes.ablation`)."""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
