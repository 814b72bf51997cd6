"""Single-view and 10-view evaluation (AlexNet §4.1: corners, centre, and their flips)."""

import numpy as np

from kzoo import preprocessing


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
