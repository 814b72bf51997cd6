"""A package's public names imported on first use (PEP 562), so that importing the
package (and every command's --help) loads neither Keras nor TensorFlow."""

import importlib
import importlib.util
import sys


def lazy_exports(package, exports):
    """(__getattr__, __dir__) for the package named `package`: a name of `exports`
    ({public name: module defining it}) is imported from its module on first use and
    kept; any other name that is a submodule (`kzoo.registry`) is imported, as an
    eager import of it would have made it an attribute."""

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
