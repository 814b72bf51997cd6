"""Small shared helpers: the multiply-add counter and model measurements (kzoo.utils.flops),
atomic files, the command-line helpers, TensorFlow bookkeeping that must not outlive a
run (kzoo.utils.graphs), and `lazy_exports`, with which every kzoo
package imports its modules on first use."""

import contextlib
import importlib
import importlib.util
import os
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


def quiet_tensorflow(verbose=False, module="tensorflow"):
    """Import `module` (TensorFlow, or Keras, which loads it under its TensorFlow backend)
    without TensorFlow's start-up log lines (CUDA probing on machines without a GPU, CPU
    features) and keep its C++ logs quiet. The commands call it once they know they need
    TensorFlow, after their arguments are parsed (so --help never loads it); the Python API
    when its first model or function is asked for. --verbose, or an explicit
    TF_CPP_MIN_LOG_LEVEL, leaves TensorFlow's logging as it is."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules or module in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # read once, when TensorFlow loads
    # Some lines are written at load time whatever the level (TF 2.19+): hide stderr meanwhile.
    with _stderr_to_devnull():
        importlib.import_module(module)


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Imported on first use (PEP 562): the command-line helpers in kzoo.utils.cli load no Keras.
_EXPORTS = {"count_macs": "kzoo.utils.flops", "layer_macs": "kzoo.utils.flops"}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
