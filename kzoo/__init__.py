"""kzoo: AlexNet, ZFNet, OverFeat and ResNet in Keras 3, exact to their papers.

    >>> import kzoo
    >>> model = kzoo.resnet50(weights=None)
    >>> kzoo.list_models(paper="alexnet")
    ['alexnet']
"""

import os as _os
import sys as _sys

from kzoo.registry import BUILDER_MODULES
from kzoo.utils import lazy_exports, quiet_tensorflow

__version__ = "0.1.0"

# TensorFlow's wheels use oneDNN's kernels only on some CPUs; without them its conv
# gradients on small maps (OverFeat's 2x2 conv3-5 at the demo size) run ~100x slower than
# the forward pass on AVX2 machines (docs/performance.md). TensorFlow reads the switch
# once, when it loads; TF_ENABLE_ONEDNN_OPTS=0 keeps its own kernels.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Public name -> the module defining it, imported on first use (PEP 562), so that
# `import kzoo` (and every `python -m kzoo...` command's --help) loads no Keras.
_EXPORTS = {
    **BUILDER_MODULES,
    "create_model": "kzoo.registry",
    "list_models": "kzoo.registry",
    "load": "kzoo.inference",
    "preprocess_input": "kzoo.inference",
    "decode_predictions": "kzoo.inference",
    "feature_extractor": "kzoo.models.features",
}

__all__ = [*_EXPORTS, "__version__"]


_export, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:  # the Python API's first model or function: Keras (and TensorFlow) load now, quietly
        quiet_tensorflow(module="keras")
    return _export(name)
