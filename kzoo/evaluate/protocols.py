"""The views each test protocol takes of an image: `view_sizes(model, protocol)`.

One place for the input sizes of every protocol; `python -m kzoo.evaluate` takes its
sizes from here and records them in its result. Loads Keras only when called (OverFeat's
sizes come from the dense model), so that a command's --help does not.
"""

import kzoo
from kzoo.preprocessing import resized_shape

PROTOCOLS = ("center", "10crop", "dense", "dense-single", "multiscale")

# How each protocol's views are made and counted (one entry of view_sizes per view).
VIEWS = {
    "center": "1 view: the centre crop (model input size) of the resized image",
    "10crop": "10 views: 4 corners and centre (model input size) of the resized image, and their flips "
              "(AlexNet §4.1)",
    "dense": "12 views: Table 5's 6 input sizes (OverFeat §3.3), each with its flip; an image becomes an HxW view "
             "by a resize that covers HxW keeping its aspect, then a centre HxW crop",
    "dense-single": "2 views: Table 5's scale 1 and its flip (OverFeat Table 2's single-scale line, "
                    "'1 fast model, scale 1, fine stride'), made as for dense",
    "multiscale": "5 views: the whole image resized to each shorter side (ResNet §3.4); sizes listed for a square "
                  "image: the longer side follows each image's aspect",
}

FLIPPED = ("dense", "dense-single")  # each input size comes twice: the view and its flip
RESNET_SCALES = (224, 256, 384, 480, 640)  # He et al. §3.4: shorter sides for the multi-scale test


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
        scales = kzoo.evaluate.dense.dense_input_sizes(model)
        return [hw for hw in (scales if protocol == "dense" else scales[:1]) for _flip in range(2)]
    # ResNet's sides are for its 224 input; a smaller model (the digits demos) scales them.
    height, width = image_shape[:2] if image_shape is not None else (1, 1)
    return [resized_shape(height, width, max(size, round(s * size / 224))) for s in RESNET_SCALES]
