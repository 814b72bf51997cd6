"""The papers' test-time procedures, on any kzoo classifier (Keras only, any backend).

views: centre crop and 10-crop (AlexNet §4.1, ZFNet, ResNet Table 3).
fcn: classifiers made fully convolutional; any input size -> a map of class scores.
dense: OverFeat's dense evaluation with offset max-pooling (§3.3, Table 5).
protocols: the views (and their input sizes) of every protocol, view_sizes.
localize: OverFeat's box regressor and greedy box merging (§4).
"""

from kzoo.evaluate.dense import TABLE5_MAPS, TABLE5_SCALES, dense_input_sizes, dense_model, dense_scores
from kzoo.evaluate.fcn import RESNET_SCALES, fully_convolutional, multiscale_probabilities, with_input_shape
from kzoo.evaluate.protocols import PROTOCOLS, view_sizes
from kzoo.evaluate.views import center_crop, predict_views, ten_crops

__all__ = [
    "PROTOCOLS",
    "RESNET_SCALES",
    "TABLE5_MAPS",
    "TABLE5_SCALES",
    "dense_input_sizes",
    "view_sizes",
    "multiscale_probabilities",
    "center_crop",
    "dense_model",
    "dense_scores",
    "fully_convolutional",
    "predict_views",
    "ten_crops",
    "with_input_shape",
]
