"""kzoo: AlexNet, ZFNet, OverFeat and ResNet in Keras 3, exact to their papers.

    >>> import kzoo
    >>> model = kzoo.resnet50(weights=None)
    >>> kzoo.list_models(paper="alexnet")
    ['alexnet']
"""

__version__ = "0.1.0"

from kzoo.models import *  # noqa: F401,F403  (the builders)
from kzoo.models import __all__ as _builders
from kzoo.inference import decode_predictions, load, preprocess_input
from kzoo.models.features import feature_extractor
from kzoo.registry import create_model, list_models

__all__ = [*_builders, "create_model", "list_models", "load", "preprocess_input", "decode_predictions",
           "feature_extractor", "__version__"]
