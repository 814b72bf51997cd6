"""Small shared helpers: the multiply-add counter and model measurements."""

import importlib

# Imported on first use (PEP 562): the command-line helpers in kzoo.utils.cli load no Keras.
_EXPORTS = {"count_macs": "kzoo.utils.flops", "layer_macs": "kzoo.utils.flops"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kzoo.utils' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted({*globals(), *_EXPORTS})
