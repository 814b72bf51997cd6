"""Small shared helpers: the multiply-add counter and model measurements."""

from kzoo.utils.lazy import lazy_exports

# Imported on first use (PEP 562): the command-line helpers in kzoo.utils.cli load no Keras.
_EXPORTS = {"count_macs": "kzoo.utils.flops", "layer_macs": "kzoo.utils.flops"}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
