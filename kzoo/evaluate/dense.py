"""OverFeat's dense multi-scale evaluation (§3.3-3.4, Table 5).

The last max-pooling is replaced by offset max-pooling (every offset of the
non-overlapping window), the classifier runs as convolutions on each offset's
map, and the results interleave into a map with the pooling's stride divided
by its size (36 -> 12 pixels for the accurate model). Per scale and flip, each
class takes its maximum over positions; then scales and flips are averaged.
"""

import numpy as np

import keras

from kzoo.evaluate.fcn import _layer_index, apply_chain, classifier_as_convs, feature_chain
from kzoo.layers import InterleaveOffsets, OffsetMaxPooling2D

# Table 5 (accurate model): input height x width per scale.
TABLE5_SCALES = ((245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569))


def dense_model(model):
    """OverFeat `model` (include_top=True) -> any input -> interleaved class-score map."""
    flatten = _layer_index(model, "flatten", "dense evaluation")
    pool = model.layers[flatten - 1]
    if not isinstance(pool, keras.layers.MaxPooling2D) or tuple(pool.pool_size) != tuple(pool.strides):
        raise ValueError(
            f"offset max-pooling needs a non-overlapping last max-pooling before the classifier "
            f"(OverFeat's pool5/pool6); '{model.name}' has '{pool.name}' "
            f"({type(pool).__name__}{'' if not hasattr(pool, 'pool_size') else f', size {pool.pool_size}, stride {pool.strides}'}). "
            f"Use fully_convolutional() for dense maps without offsets."
        )
    size = tuple(pool.pool_size)
    inputs = keras.Input((None, None, model.inputs[0].shape[-1]))
    x = apply_chain(feature_chain(model, flatten - 1), inputs)
    x = OffsetMaxPooling2D(size, name="offset_pool")(x)
    x = classifier_as_convs(model, flatten)(x)
    return keras.Model(inputs, InterleaveOffsets(size, name="interleave")(x), name=f"{model.name}_dense")


def dense_scores(dense, images, flips=True):
    """Mean over `images` (one per scale, each (H, W, C)) and their flips of the
    per-class maximum over the dense map; returns (classes,) scores."""
    per_view = []
    for image in images:
        image = np.asarray(image, "float32")[None]
        views = [image, image[:, :, ::-1]] if flips else [image]
        for view in views:
            try:
                scores = np.asarray(dense(view))
            except Exception as err:  # the backend's shape error, whichever backend
                raise ValueError(
                    f"a {view.shape[1]}x{view.shape[2]} image is too small for dense evaluation with offset "
                    f"pooling: every offset's pooled map must still hold the classifier's window (OverFeat "
                    f"fast needs more than 231, accurate more than 221; Table 5 starts at 245)."
                ) from err
            per_view.append(scores.reshape(-1, scores.shape[-1]).max(axis=0))
    return np.mean(per_view, axis=0)
