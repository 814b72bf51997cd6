"""A model's scores under each test protocol: single view and 10 views (AlexNet §4.1:
corners, centre, and their flips), OverFeat's dense maps, ResNet's multi-scale maps.
Views of one shape go through the network together; a progress bar shows images/s."""

import itertools
import time

import keras
import numpy as np

from kzoo import preprocessing
from kzoo.evaluate.dense import DenseEvaluator
from kzoo.evaluate.fcn import fully_convolutional
from kzoo.evaluate.protocols import FLIPPED, PROTOCOLS, VIEWS, view_sizes

CHUNK = {"center": 256, "10crop": 64, "dense": 8, "dense-single": 8, "multiscale": 8}  # images per step


def _check(images, size):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C); got shape {images.shape}.")
    if images.shape[1] < size or images.shape[2] < size:
        raise ValueError(
            f"images of {images.shape[1]}x{images.shape[2]} are smaller than the network's "
            f"{size}x{size} window; resize them first (the papers use a 256 shorter side)."
        )
    return images


def center_crop(images, size):
    images = _check(images, size)
    return np.stack([preprocessing.center_crop(image, size) for image in images])


def ten_crops(images, size):
    """(N, H, W, C) -> (N, 10, size, size, C): 4 corners, centre, then the same flipped."""
    return np.stack([preprocessing.ten_crops(image, size) for image in _check(images, size)])


def predict_views(model, images, protocol="center", batch_size=32):
    """Class probabilities per image: one centre view, or the mean softmax of 10 views.

    `model` outputs probabilities (classifier_activation="softmax"); `images`
    are preprocessed (mean-subtracted) and at least the model's input size.
    """
    size = model.inputs[0].shape[1]
    if protocol == "center":
        return model.predict(center_crop(images, size), batch_size=batch_size, verbose=0)
    if protocol == "10crop":
        views = ten_crops(images, size)
        probs = model.predict(views.reshape(-1, *views.shape[2:]), batch_size=batch_size, verbose=0)
        return probs.reshape(len(views), 10, -1).mean(axis=1)
    raise ValueError(f"unknown protocol {protocol!r}; expected 'center' or '10crop'.")


def evaluate(trained, images, labels, protocol, limit=None, progress=False, total=None):
    """Top-1 and top-5 error of `trained` (a kzoo.load object) on raw uint8 `images` and
    `labels` (sequences, or an iterable of images that fills `labels` as it goes), with
    the views the protocol took (`view_sizes`: (height, width) per view)."""
    if total is None and hasattr(images, "__len__"):
        total = len(images) if limit is None else min(len(images), limit)
    probs = protocol_scores(trained, itertools.islice(images, limit), protocol, progress, total)
    labels = np.asarray(labels[: len(probs)])
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return {"protocol": protocol, "images": len(labels),
            "top1_err": float(np.mean(top5[:, 0] != labels)),
            "top5_err": float(np.mean(~(top5 == labels[:, None]).any(axis=1))),
            "views": VIEWS[protocol], "view_sizes": [list(hw) for hw in view_sizes(trained.model, protocol)]}


def protocol_scores(trained, images, protocol, progress=False, total=None):
    """(images, classes) scores of `trained` (kzoo.load) on raw uint8 `images` (any
    iterable) under `protocol`, on the views `view_sizes` gives: softmax means (center,
    10crop, multiscale), OverFeat's dense scores. `progress`: a bar with images/s and,
    given the `total` (or a sized `images`), the ETA."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {protocol!r}; expected one of {PROTOCOLS}.")
    step = _protocol_step(trained, protocol)
    total = len(images) if total is None and hasattr(images, "__len__") else total
    bar = keras.utils.Progbar(total, unit_name="image", stateful_metrics=["images/s"]) if progress else None
    scores, start, images = [], time.perf_counter(), iter(images)
    while chunk := list(itertools.islice(images, CHUNK[protocol])):
        scores.extend(step(chunk))
        if bar is not None:
            bar.update(len(scores), [("images/s", len(scores) / (time.perf_counter() - start))])
    if not scores:
        raise ValueError("no images to evaluate.")
    return np.stack(scores)


def _protocol_step(trained, protocol):
    """A function of a list of raw images -> their (classes,) scores under `protocol`."""
    model = trained.model
    if protocol in FLIPPED:
        evaluator = DenseEvaluator(model)
        scales = view_sizes(model, protocol)[::2]  # each size is listed with its flip, which scores adds
        return lambda images: evaluator.scores(trained.mean_free(images), scales)
    if protocol == "multiscale":
        fcn = fully_convolutional(model)
        return lambda images: _multiscale(model, fcn, trained.mean_free(images))
    if protocol == "center":
        return lambda images: model.predict(trained.preprocess(images), verbose=0)
    return lambda images: _ten_view_mean(model, trained.ten_views(images))


def _ten_view_mean(model, views):
    flat = model.predict(views.reshape(-1, *views.shape[2:]), verbose=0)
    return flat.reshape(len(views), 10, -1).mean(axis=1)


def _multiscale(model, fcn, images, batch_size=4):
    """ResNet §3.4 on mean-free images of any size: each resized to the protocol's shorter
    sides (its aspect kept); per view the softmax averaged over positions, then over views.
    Views of the same shape, from any image, run together."""
    by_shape = {}
    for n, image in enumerate(images):
        for hw in view_sizes(model, "multiscale", image.shape):
            by_shape.setdefault(hw, []).append((n, preprocessing.resize(image, *hw)))
    per_image = [[] for _ in images]
    for views in by_shape.values():
        for first in range(0, len(views), batch_size):
            batch = views[first : first + batch_size]
            maps = keras.ops.convert_to_numpy(fcn(np.stack([view for _, view in batch])))
            for (n, _), mean in zip(batch, maps.reshape(len(batch), -1, maps.shape[-1]).mean(axis=1)):
                per_image[n].append(mean)
    return [np.mean(views, axis=0) for views in per_image]
