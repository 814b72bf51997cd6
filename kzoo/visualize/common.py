"""What every visualization shares: finding layers by name, normalizing images for
display, drawing grids and writing figures without leaving half-written files."""

import os

import numpy as np

import keras

from kzoo.models.features import get_layer, stage_layers  # noqa: F401  (get_layer: the visualizations' import)
from kzoo.utils.files import atomic_write


def feature_layers(model):
    """Names of the layers with a 4-D output (feature maps), in graph order."""
    return [layer.name for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]


def last_feature_layer(model):
    """The last rectified feature-map layer (layer 5 of AlexNet/ZFNet/OverFeat, the last
    block of a ResNet): the default for occlusion and top-9, `feature_extractor`'s last
    stage where the model has kzoo's stages."""
    stages = stage_layers(model)
    if stages:
        return stages[-1]
    relus = [name for name in feature_layers(model) if isinstance(model.get_layer(name), keras.layers.ReLU)]
    if not relus:
        raise ValueError(f"{model.name!r} has no ReLU feature-map layer; name one with `layer`.")
    return relus[-1]


def hidden_layer(model):
    """The last hidden representation before the classifier: the last vector-valued
    layer before the final Dense, preferring a ReLU or other activation layer (AlexNet's
    relu7, not drop7; ResNet's avg_pool)."""
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    if layers and isinstance(layers[-1], keras.layers.Dense):
        layers = layers[:-1]
    vectors = [l for l in layers if len(l.output.shape) == 2]
    relus = [l for l in vectors if isinstance(l, (keras.layers.ReLU, keras.layers.Activation))]  # tanh nets too
    if not vectors:
        raise ValueError(f"{model.name!r} has no vector-valued hidden layer; name one with `layer`.")
    return (relus or vectors)[-1].name


def to_display(image):
    """Any real (H, W, C) array -> [0, 1] RGB for display (min-max over the array)."""
    image = np.asarray(image, np.float32)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def grid(images, columns, pad=1):
    """(N, H, W, 3) display images -> one mosaic (rows of `columns`), white gaps."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.ones((rows * (h + pad) - pad, columns * (w + pad) - pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        out[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = image
    return out


def save_figure(fig, path, dpi=100):
    """Write a matplotlib figure to `path` (PNG) atomically and close it; returns `path`."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def figure(rows=1, cols=1, size=3.0):
    """A non-interactive matplotlib figure (Agg: works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
