"""Small shared helpers: the multiply-add counter and model measurements (kzoo.utils.flops),
atomic files, the command-line helpers, TensorFlow bookkeeping that must not outlive a
run (kzoo.utils.graphs), and `lazy_exports`, with which every kzoo
package imports its modules on first use."""

import importlib
import importlib.util
import sys


def lazy_exports(package, exports):
    """(__getattr__, __dir__) for the package named `package`: a name of `exports`
    ({public name: module defining it}) is imported from its module on first use and
    kept; any other name that is a submodule (`kzoo.registry`) is imported, as an
    eager import of it would have made it an attribute.

    This is kzoo's one way to defer an import: a module imports its package at the top
    (`from kzoo import train`) and names the heavy module where it uses it
    (`train.engine.train(...)`), so a command answers --help before TensorFlow loads."""

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)  # once: later lookups skip __getattr__
            return value
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__


# Imported on first use (PEP 562): the command-line helpers in kzoo.utils.cli load no Keras.
_EXPORTS = {"count_macs": "kzoo.utils.flops", "layer_macs": "kzoo.utils.flops"}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
