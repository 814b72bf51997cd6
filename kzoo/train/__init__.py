"""The training engine (TensorFlow): one custom loop for every strategy, the papers' schedules."""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
