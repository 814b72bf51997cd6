"""The papers' test-time procedures, on any kzoo classifier (Keras only, any backend).

views: centre crop and 10-crop (AlexNet §4.1, ZFNet, ResNet Table 3).
fcn: classifiers made fully convolutional; any input size -> a map of class scores.
dense: OverFeat's dense evaluation with offset max-pooling (§3.3, Table 5).
localize: OverFeat's box regressor and greedy box merging (§4).
"""

import importlib

# Imported on first use (PEP 562): `python -m kzoo.evaluate --help` loads no Keras.
_EXPORTS = {
    "RESNET_SCALES": "kzoo.evaluate.fcn",
    "TABLE5_SCALES": "kzoo.evaluate.dense",
    "multiscale_probabilities": "kzoo.evaluate.fcn",
    "center_crop": "kzoo.evaluate.views",
    "dense_model": "kzoo.evaluate.dense",
    "dense_scores": "kzoo.evaluate.dense",
    "fully_convolutional": "kzoo.evaluate.fcn",
    "predict_views": "kzoo.evaluate.views",
    "ten_crops": "kzoo.evaluate.views",
    "with_input_shape": "kzoo.evaluate.fcn",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kzoo.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted({*globals(), *_EXPORTS})
