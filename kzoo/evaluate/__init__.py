"""The papers' test-time procedures, on any kzoo classifier (Keras only, any backend).

views: centre crop and 10-crop (AlexNet §4.1, ZFNet, ResNet Table 3); every protocol's
    scores over a set of images (evaluate, protocol_scores), of one model or an ensemble
    (evaluate_ensemble, ensemble_scores).
fcn: classifiers made fully convolutional; any input size -> a map of class scores.
dense: OverFeat's dense evaluation with offset max-pooling (§3.3, Table 5).
protocols: the protocols by name, their views and ResNet's test scales (no Keras).
metrics: IoU, ILSVRC's localization error, and average precision and its mean as
    PASCAL VOC 2012 defines them, for classification and detection (IoU >= 0.5).

What is trained on a classifier's features (localization, detection, transfer) is kzoo.tasks.
"""

from kzoo.utils import lazy_exports

# Imported on first use (PEP 562): `python -m kzoo.evaluate --help` loads no Keras.
_EXPORTS = {
    "PROTOCOLS": "kzoo.evaluate.protocols",
    "view_sizes": "kzoo.evaluate.views",
    "RESNET_SCALES": "kzoo.evaluate.protocols",
    "TABLE5_MAPS": "kzoo.evaluate.dense",
    "TABLE5_SCALES": "kzoo.evaluate.dense",
    "dense_input_sizes": "kzoo.evaluate.dense",
    "multiscale_probabilities": "kzoo.evaluate.fcn",
    "center_crop": "kzoo.evaluate.views",
    "DenseEvaluator": "kzoo.evaluate.dense",
    "dense_model": "kzoo.evaluate.dense",
    "dense_scores": "kzoo.evaluate.dense",
    "fully_convolutional": "kzoo.evaluate.fcn",
    "ensemble_scores": "kzoo.evaluate.views",
    "evaluate": "kzoo.evaluate.views",
    "evaluate_ensemble": "kzoo.evaluate.views",
    "predict_views": "kzoo.evaluate.views",
    "protocol_scores": "kzoo.evaluate.views",
    "ten_crops": "kzoo.evaluate.views",
    "with_input_shape": "kzoo.evaluate.fcn",
    "average_precision": "kzoo.evaluate.metrics",
    "mean_average_precision": "kzoo.evaluate.metrics",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
