"""A model's scores under each test protocol: single view and 10 views (AlexNet §4.1:
corners, centre, and their flips), OverFeat's dense maps, ResNet's multi-scale maps;
and of an ensemble, its models' scores averaged (AlexNet §6, ZFNet Table 1, ResNet §4.1).
Views of one shape go through the network together; a progress bar shows images/s."""

import itertools
import time

import keras
import numpy as np

from kzoo import preprocessing
from kzoo.preprocessing import resized_shape
from kzoo.evaluate.dense import DenseEvaluator, dense_input_sizes
from kzoo.evaluate.fcn import fully_convolutional
from kzoo.evaluate.protocols import FLIPPED, PROTOCOLS, RESNET_SCALES, VIEWS
from kzoo.utils.progress import progress_bar, rate

CHUNK = {"center": 256, "10crop": 64, "dense": 8, "dense-single": 8, "multiscale": 8}  # images per step


def view_sizes(model, protocol, image_shape=None):
    """(height, width) of each view's input under `protocol` for `model` (one entry per view,
    a flip counting as a view, in the order evaluated). Multiscale views keep the image's
    aspect: give `image_shape` (H, W, ...) for that image's sizes; without it they are a
    square image's."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    size = model.inputs[0].shape[1]
    if protocol == "center":
        return [(size, size)]
    if protocol == "10crop":
        return [(size, size)] * 10
    if protocol in FLIPPED:
        scales = dense_input_sizes(model)
        return [hw for hw in (scales if protocol == "dense" else scales[:1]) for _flip in range(2)]
    # ResNet's sides are for its 224 input; a smaller model (the digits demos) scales them.
    height, width = image_shape[:2] if image_shape is not None else (1, 1)
    return [resized_shape(height, width, max(size, round(s * size / 224))) for s in RESNET_SCALES]


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
    total = _total(images, limit, total)
    probs = protocol_scores(trained, itertools.islice(images, limit), protocol, progress, total)
    labels = np.asarray(labels[: len(probs)])
    return {"protocol": protocol, "images": len(labels), **_errors(probs, labels),
            "views": VIEWS[protocol], "view_sizes": _sizes(trained, protocol)}


def evaluate_ensemble(members, images, labels, protocol, limit=None, progress=False, total=None):
    """`evaluate` for the ensemble of `members` (kzoo.load objects; AlexNet §6, ResNet §4.1):
    top1_err/top5_err of their averaged scores (`ensemble_scores`), "ensemble" (how many
    models) and "members": each model's own errors and view sizes, as `evaluate` gives them
    alone. "view_sizes" is the members' common list, None when their input sizes differ."""
    total = _total(images, limit, total)
    scores, each = ensemble_scores(members, itertools.islice(images, limit), protocol, progress, total)
    labels = np.asarray(labels[: len(scores)])
    sizes = [_sizes(trained, protocol) for trained in members]
    return {"protocol": protocol, "images": len(labels), **_errors(scores, labels), "views": VIEWS[protocol],
            "view_sizes": sizes[0] if all(s == sizes[0] for s in sizes) else None, "ensemble": len(members),
            "members": [{"model": trained.name, "origin": trained.origin, **_errors(own, labels), "view_sizes": size}
                        for trained, own, size in zip(members, each, sizes)]}


def _total(images, limit, total):
    if total is None and hasattr(images, "__len__"):
        return len(images) if limit is None else min(len(images), limit)
    return total


def _errors(scores, labels):
    top5 = np.argsort(-scores, axis=1)[:, :5]
    return {"top1_err": float(np.mean(top5[:, 0] != labels)),
            "top5_err": float(np.mean(~(top5 == labels[:, None]).any(axis=1)))}


def _sizes(trained, protocol):
    return [list(hw) for hw in view_sizes(trained.model, protocol)]


def protocol_scores(trained, images, protocol, progress=False, total=None):
    """(images, classes) scores of `trained` (kzoo.load) on raw uint8 `images` (any
    iterable) under `protocol`, on the views `view_sizes` gives: softmax means (center,
    10crop, multiscale), OverFeat's dense scores. `progress`: a bar with images/s and,
    given the `total` (or a sized `images`), the ETA."""
    return _stream([trained], images, protocol, progress, total)[0]


def ensemble_scores(members, images, protocol, progress=False, total=None):
    """(mean, each): the ensemble's (images, classes) scores, the mean of its members'
    `protocol_scores`, and the list of each member's own. Each member (a kzoo.load object)
    sees the raw uint8 `images` through its own preprocessing (input size, resize, mean)
    and protocol views; the images are read once, a chunk at a time, for all members."""
    members = list(members)
    check_ensemble(members)
    each = _stream(members, images, protocol, progress, total)
    return np.mean(each, axis=0), each


def check_ensemble(members):
    """Refuse models whose scores cannot be averaged class by class: other class counts or
    names (their label ids mean other things), or one model given twice."""
    if not members:
        raise ValueError("an ensemble needs at least one model; give one or more kzoo.load objects.")
    first = members[0]
    for n, trained in enumerate(members[1:], 2):
        if trained.classes != first.classes:
            raise ValueError(
                f"member {n} ({trained.origin}) has {trained.classes} classes but member 1 ({first.origin}) has "
                f"{first.classes}: their scores cannot be averaged class by class. Ensemble models trained on "
                f"the same classes.")
        if list(trained.class_names) != list(first.class_names):
            i = next(i for i, (a, b) in enumerate(zip(first.class_names, trained.class_names)) if a != b)
            raise ValueError(
                f"member {n} ({trained.origin}) names class {i} {trained.class_names[i]!r} but member 1 "
                f"({first.origin}) names it {first.class_names[i]!r}: their label ids mean other classes. "
                f"Ensemble models trained on the same classes, in the same order.")
    models = [id(trained.model) for trained in members]
    for n, model in enumerate(models):
        if model in models[:n]:
            raise ValueError(f"member {n + 1} ({members[n].origin}) is the same model as member "
                             f"{models.index(model) + 1}: an ensemble averages different models; drop one.")


def _stream(members, images, protocol, progress, total):
    """Each member's (images, classes) scores: a chunk of raw images is read, then every
    member scores it, so the images are decoded once and need not fit in memory."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {protocol!r}; expected one of {PROTOCOLS}.")
    steps = [_protocol_step(trained, protocol) for trained in members]
    total = len(images) if total is None and hasattr(images, "__len__") else total
    bar = progress_bar(total, unit_name="image", stateful_metrics=["images/s"]) if progress else None
    scores, done, start, images = [[] for _ in steps], 0, time.perf_counter(), iter(images)
    while chunk := list(itertools.islice(images, CHUNK[protocol])):
        for step, own in zip(steps, scores):
            own.extend(step(chunk))
        done += len(chunk)
        if bar is not None:
            bar.update(done, [("images/s", rate(done, time.perf_counter() - start))])
    if not done:
        raise ValueError("no images to evaluate.")
    return [np.stack(own) for own in scores]


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
