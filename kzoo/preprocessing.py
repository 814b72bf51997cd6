"""What a model expects as input: the inference-time views of the `Preprocess` record
(defined in kzoo.registry with each paper's pipeline, PIPELINES; imported here too).

The same record describes a recipe's training pipeline (kzoo.data.transforms
adds the random augmentation in tf.data), is stored in every run's config.json
and in every weights manifest entry, and drives every consumer at inference
time: predict, evaluate, visualize, transfer and localization all get their
views from the functions here. NumPy only (no TensorFlow, no Keras), so it runs
wherever the models run; the resize equals `tf.image.resize(..., "bilinear",
antialias=True)`, the resize of the training pipeline, to float rounding (so a
quantized pixel can differ by one where the resize lands within ~1e-4 of a half).
"""

import numpy as np

from kzoo.data import images as image_files  # the one image reader
from kzoo.registry import CROPS, PIPELINES, Preprocess  # noqa: F401 (the record, imported from here too)


def resize_weights(in_size, out_size):
    """(out_size, in_size) weights of TensorFlow's antialiased bilinear resize along one axis:
    its scale_and_translate with a triangle kernel widened by the downscaling factor, in
    float32 as TensorFlow computes them (so the two agree to float rounding)."""
    f32 = np.float32
    inv_scale = f32(1) / (f32(out_size) / f32(in_size))
    kernel_scale = max(inv_scale, f32(1))
    centres = (np.arange(out_size, dtype=f32) + f32(0.5)) * inv_scale  # sample positions, input pixels
    source = np.arange(in_size, dtype=f32) + f32(0.5)
    distance = np.abs(source[None, :] - centres[:, None]) * (f32(1) / kernel_scale)
    weights = np.maximum(f32(0), f32(1) - distance)
    # TF's span: the pixels within the kernel's radius, clamped to the image.
    start = np.clip(np.ceil(centres - kernel_scale - f32(0.5)), 0, in_size - 1)
    end = np.clip(np.floor(centres + kernel_scale - f32(0.5)), 0, in_size - 1) + 1
    index = np.arange(in_size)[None, :]
    weights = weights * ((index >= start[:, None]) & (index < end[:, None]))
    total = weights.sum(axis=1, keepdims=True, dtype=f32)
    return weights / np.where(total > 0, total, f32(1))


def resized_shape(height, width, shorter):
    """The (height, width) `resize_shorter` gives, rounded as TensorFlow rounds it (float32,
    half to even) in the training pipeline."""
    shape = np.array([height, width], np.float32)
    return tuple(int(v) for v in np.round(shape * (np.float32(shorter) / shape.min())))


def resize(image, height, width):
    """(H, W, C) -> (height, width, C) float32, TensorFlow's antialiased bilinear resize."""
    image = np.asarray(image, np.float32)
    rows, cols = resize_weights(image.shape[0], height), resize_weights(image.shape[1], width)
    h, w, c = image.shape
    out = (rows @ image.reshape(h, w * c)).reshape(height, w, c)  # matmuls: BLAS, not einsum's loops
    return np.matmul(cols, out)


def resize_shorter(image, shorter):
    """(H, W, C) -> float32 with its shorter side `shorter`, the aspect kept."""
    return resize(image, *resized_shape(image.shape[0], image.shape[1], shorter))


def resized(image, shorter):
    """The recipes' first step (kzoo.data.transforms.resized): the shorter side resized to
    `shorter`, then rounded and clipped to 8-bit values (float32), as the training pipeline
    and prepared shards store them; an image already that size passes unchanged."""
    image = np.asarray(image, np.float32)
    if min(image.shape[:2]) == shorter:
        return image
    return np.clip(np.round(resize_shorter(image, shorter)), 0, 255)


def center_crop(image, height, width=None):
    """The centre (height, width) window of (H, W, C) (offsets rounded down, as in training)."""
    width = height if width is None else width
    h, w = image.shape[:2]
    if h < height or w < width:
        raise ValueError(f"an image of {h}x{w} is smaller than the {height}x{width} window; resize it first.")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def mean_colour(mean):
    """A mean image or colour -> the mean colour (3,)."""
    return np.asarray(mean, np.float32).reshape(-1, 3).mean(axis=0)


def base_image(image, p, mean):
    """One raw image (H, W, 3), 0-255 -> resized to p's shorter side, centre-squared where the
    recipe squares, mean removed (the mean image, else the mean colour), scaled, in the model's
    channel order: what every evaluation view is cut from."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3); got shape {image.shape}.")
    image = resized(image, p.eval_resize)
    if p.center:
        image = center_crop(image, p.center)
    mean = np.asarray(mean, np.float32)
    if p.pixel_mean and mean.ndim == 3:
        if mean.shape != image.shape:
            raise ValueError(f"the mean image is {mean.shape[0]}x{mean.shape[1]} but the preprocessing "
                             f"gives {image.shape[0]}x{image.shape[1]} images; they come from different runs.")
        return _scaled(image - mean, p)
    return mean_free(image, p, mean)


def mean_free(image, p, mean):
    """Any image, not resized: the mean colour removed, scaled, in the model's channel order
    (the input of protocols that resize it to several scales themselves)."""
    return _scaled(np.asarray(image, np.float32) - mean_colour(mean), p)


def _scaled(image, p):
    if p.scale != 1:
        image = image * np.float32(p.scale)
    return image[..., ::-1] if p.color == "BGR" else image


def center_view(image, p, mean):
    """The single centre view the recipes validate with: (crop, crop, 3) float32."""
    return center_crop(base_image(image, p, mean), p.crop)


def view_box(box, height, width, p):
    """A box (x1, y1, x2, y2) in pixels of a stored height x width image -> the same box in
    pixels of its `center_view` (float, unclipped): scaled as `resized` scales the image (pixel
    edges scale with it), shifted by the centre square's and the crop's offsets."""
    same = min(height, width) == p.eval_resize  # `resized` leaves such an image as it is
    rows, cols = (height, width) if same else resized_shape(height, width, p.eval_resize)
    sy, sx = rows / height, cols / width
    top = left = 0
    if p.center:
        top, left, rows, cols = (rows - p.center) // 2, (cols - p.center) // 2, p.center, p.center
    top, left = top + (rows - p.crop) // 2, left + (cols - p.crop) // 2
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * sx - left, y1 * sy - top, x2 * sx - left, y2 * sy - top)


def crop_origins(height, width, size):
    """(top, left) of the 5 fixed `size` windows of a height x width image: the 4 corners
    (top-left, top-right, bottom-left, bottom-right), then the centre (offsets rounded down,
    as `center_crop`). AlexNet §4.1's test views and ZFNet §3's training sub-crops; plain
    arithmetic, so the training pipeline calls it on tensors."""
    return [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size),
            ((height - size) // 2, (width - size) // 2)]


def ten_crops(image, size):
    """(H, W, C) -> (10, size, size, C): 4 corners, centre, then the same flipped."""
    h, w = image.shape[0], image.shape[1]
    if h < size or w < size:
        raise ValueError(f"an image of {h}x{w} is smaller than the {size}x{size} window.")
    crops = [image[t : t + size, l : l + size] for t, l in crop_origins(h, w, size)]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def ten_views(image, p, mean):
    """AlexNet §4.1's 10 views of one raw image -> (10, crop, crop, 3)."""
    return ten_crops(base_image(image, p, mean), p.crop)


def _check_pixels(image):
    """8-bit values, whatever the array's type: the models were trained on 0-255 pixels."""
    if image.dtype.kind not in "uif":
        raise ValueError(f"expected pixel values (uint8, or numbers in 0-255); got an array of {image.dtype} "
                         f"values.")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("the image holds NaN or infinite values; pass 0-255 pixel values.")
    low, high = image.min(), image.max()
    if low < 0 or high > 255:
        hint = (" (a 16-bit image? divide it by 257)" if high <= 65535 and low >= 0 else "")
        raise ValueError(f"pixel values must lie in 0-255 (8-bit RGB); this image's run from {low:g} to "
                         f"{high:g}{hint}.")


def as_images(images):
    """File paths, one image, or a batch -> a list of (H, W, 3) arrays."""
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        images = [images]
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):  # one image (greyscale or RGB), not a batch
        images = [images]
    out = []
    for item in images:
        is_path = isinstance(item, (str, bytes)) or hasattr(item, "__fspath__")
        item = image_files.read(item) if is_path else np.asarray(item)
        if item.ndim == 2:
            item = np.repeat(item[..., None], 3, axis=-1)
        if item.ndim != 3 or item.shape[-1] != 3 or 0 in item.shape:
            raise ValueError(f"expected RGB images (H, W, 3) or file paths; got an array of shape {item.shape}.")
        _check_pixels(item)
        if item.dtype.kind == "f" and 0 < item.max() <= 1.0 and item.min() >= 0:
            raise ValueError("the image's pixels are in [0, 1]; kzoo's models take 0-255 values (the papers' "
                             "range): multiply by 255, or pass the uint8 image.")
        out.append(item)
    if not out:
        raise ValueError("no images given.")
    return out
