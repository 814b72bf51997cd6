"""kzoo: AlexNet, ZFNet, OverFeat and ResNet in Keras 3, exact to their papers.

    >>> import kzoo
    >>> model = kzoo.resnet50(weights=None)
    >>> kzoo.list_models(paper="alexnet")
    ['alexnet']
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

# TensorFlow's wheels use oneDNN's kernels only on some CPUs; without them its conv
# gradients on small maps (OverFeat's 2x2 conv3-5 at the demo size) run ~100x slower than
# the forward pass on AVX2 machines (docs/performance.md). TensorFlow reads the switch
# once, when it loads; TF_ENABLE_ONEDNN_OPTS=0 keeps its own kernels.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from kzoo.models import *  # noqa: F401,F403  (the builders)
from kzoo.models import __all__ as _builders
from kzoo.registry import create_model, list_models

__all__ = [*_builders, "create_model", "list_models", "__version__"]
