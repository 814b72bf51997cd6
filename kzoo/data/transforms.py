"""The papers' training pipelines as tf.data maps of a `Preprocess` record (kzoo.preprocessing).

Random choices use stateless ops seeded per example, so an epoch's
augmentation is a function of (seed, epoch, example index): a resumed run
sees exactly the images an uninterrupted one would.
"""

import tensorflow as tf

from kzoo.preprocessing import Preprocess, crop_origins  # noqa: F401  (Preprocess: the record these maps read)


def resize_shorter(image, size):
    """float32 with its shorter side `size` (TensorFlow's antialiased bilinear resize). A uint8
    image goes in as it is: the kernel reads it as float, giving the same numbers as casting
    first, at a third of the time (measured, benchmarks/pipeline.py)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    return tf.image.resize(image, new, method="bilinear", antialias=True)


def quantize(image):
    """Rounded (half to even) and clipped to [0, 255]: the 8-bit pixels a stored image holds."""
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


def resized(image, size):
    """The recipes' first step, as uint8: the shorter side resized to `size` and rounded to 8
    bits, as AlexNet §2 stored its 256-pixel images, so prepared shards (kzoo.data.prepare)
    hold exactly these pixels. An image already that size passes unchanged (the resize would
    be the identity: one weight of 1 per pixel)."""
    if image.dtype != tf.uint8:
        image = tf.cast(quantize(tf.cast(image, tf.float32)), tf.uint8)
    same = tf.reduce_min(tf.shape(image)[:2]) == tf.cast(size, tf.int32)
    return tf.cond(same, lambda: image, lambda: tf.cast(quantize(resize_shorter(image, size)), tf.uint8))


def center_crop(image, size):
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def _mean_free(image, p, stats, window=None):
    """Subtract the mean image (fixed-size centre squares; its `window` (top, left) when `image`
    is a crop of them) or else the mean colour; then the record's scale and channel order (as
    kzoo.preprocessing.base_image). Subtracting after cropping gives the numbers subtracting
    before would, on a fraction of the pixels."""
    mean = tf.constant(stats["mean"], tf.float32)
    image = tf.cast(image, tf.float32)
    if p.pixel_mean and len(mean.shape) == 3:
        if window is not None:
            h, w = tf.shape(image)[0], tf.shape(image)[1]
            mean = mean[window[0] : window[0] + h, window[1] : window[1] + w]
        image = image - mean
    else:
        image = image - tf.reduce_mean(tf.reshape(mean, [-1, 3]), 0)
    if p.scale != 1:
        image = image * p.scale
    return image[..., ::-1] if p.color == "BGR" else image


def _squared(image, p, shorter=None):
    """uint8: resized (shorter side; `shorter` overrides) and centre-squared where the recipe squares."""
    image = resized(image, shorter if shorter is not None else p.eval_resize)
    return center_crop(image, p.center) if p.center else image


def base_image(image, p, shorter=None):
    """Resized (shorter side; `shorter` overrides) and quantized, centre-squared, float32 in [0, 255]."""
    return tf.cast(_squared(image, p, shorter), tf.float32)


def eval_map(p, stats):
    """(image, label) -> (centre view, label): the single-view evaluation input."""

    @tf.autograph.experimental.do_not_convert  # plain Python branches: autograph only costs tracing time
    def fn(image, label):
        image = _squared(image, p)
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        return _mean_free(center_crop(image, p.crop), p, stats, ((h - p.crop) // 2, (w - p.crop) // 2)), label

    return fn


def scaled_crop(image, shorter, crop, seeds):
    """ResNet's scale augmentation (§3.4) resizing only the crop: the shorter side to `shorter`
    and a random `crop` square (offsets drawn from seeds[1], seeds[2] as for a cropped full
    resize), as uint8. Only the window of the original that the crop's pixels read (the
    antialiasing kernel's reach included) is resized, with the full resize's scales and a
    translation, so the pixels are the full resize's up to float rounding (a rare one differs by
    one level) at a fraction of the cost: at a shorter side of 480 the full resize computes 6x
    the crop's pixels."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(shape * (tf.cast(shorter, tf.float32) / tf.reduce_min(shape))), tf.int32)
    top = tf.random.stateless_uniform([], seeds[1], 0, new[0] - crop + 1, tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], 0, new[1] - crop + 1, tf.int32)
    scale = tf.cast(new, tf.float32) / shape  # tf.image.resize's, per axis
    reach = tf.maximum(1.0 / scale, 1.0) + 1.0  # the triangle kernel's radius in input pixels, and a margin
    corner = tf.cast(tf.stack([top, left]), tf.float32)
    start = tf.cast(tf.maximum(tf.floor(corner / scale - reach), 0.0), tf.int32)
    end = tf.cast(tf.minimum(tf.math.ceil((corner + crop) / scale + reach), shape), tf.int32)
    window = image[start[0] : end[0], start[1] : end[1]]
    out = tf.raw_ops.ScaleAndTranslate(images=window[None], size=[crop, crop], scale=scale,
                                       translation=tf.cast(start, tf.float32) * scale - corner,
                                       kernel_type="triangle", antialias=True)[0]
    return tf.cast(quantize(out), tf.uint8)


def fixed_crop_origin(height, width, size, seed):
    """ZFNet §3's training sub-crop: the (top, left) of one of `crop_origins`' 5 windows (the
    corners and the centre), drawn uniformly from `seed`. With train_map's random flip, one of
    the ten views evaluation takes (kzoo.preprocessing.ten_crops), each with probability 1/10."""
    windows = crop_origins(height, width, size)
    k = tf.random.stateless_uniform([], seed, 0, len(windows), tf.int32)
    origin = tf.gather(tf.stack([tf.stack([top, left]) for top, left in windows]), k)
    return origin[0], origin[1]


def train_map(p, stats):
    """(image, label, seed[2]) -> (augmented float image, label)."""
    eigvals = tf.constant(stats["eigvals"], tf.float32)
    eigvecs = tf.constant(stats["eigvecs"], tf.float32)

    @tf.autograph.experimental.do_not_convert  # converting took ~0.5 s of every epoch's pipeline
    def fn(image, label, seed):
        seeds = tf.random.experimental.stateless_split(seed, 5)
        if isinstance(p.resize, tuple) and not (p.pad or p.center) and p.crops == "random":
            shorter = tf.random.stateless_uniform([], seeds[0], p.resize[0], p.resize[1] + 1, tf.int32)
            crop = _mean_free(scaled_crop(image, shorter, p.crop, seeds), p, stats)
        else:
            shorter = None
            if isinstance(p.resize, tuple):
                shorter = tf.random.stateless_uniform([], seeds[0], p.resize[0], p.resize[1] + 1, tf.int32)
            image = _squared(image, p, shorter)
            if p.pad:  # zeros around the mean-free image
                image = tf.pad(_mean_free(image, p, stats), [(p.pad, p.pad), (p.pad, p.pad), (0, 0)])
            h, w = tf.shape(image)[0], tf.shape(image)[1]
            if p.crops == "ten":
                top, left = fixed_crop_origin(h, w, p.crop, seeds[1])
            else:
                top = tf.random.stateless_uniform([], seeds[1], 0, h - p.crop + 1, tf.int32)
                left = tf.random.stateless_uniform([], seeds[2], 0, w - p.crop + 1, tf.int32)
            crop = image[top : top + p.crop, left : left + p.crop]
            if not p.pad:
                crop = _mean_free(crop, p, stats, (top, left))
        if p.flip:  # tf.cond: tf.where would reverse every crop (4x the time, measured)
            flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
            crop = tf.cond(flip, lambda: tf.reverse(crop, [1]), lambda: crop)
        if p.pca:
            # AlexNet §4.1: add sum_i p_i * alpha_i * lambda_i to every pixel (stats in [0, 1] units).
            # The 3x3 product written out: matvec's numbers (checked bitwise), without a matmul
            # kernel's per-call cost.
            w = tf.random.stateless_normal([3], seeds[4], stddev=p.pca) * eigvals
            crop = crop + 255.0 * (eigvecs[:, 0] * w[0] + eigvecs[:, 1] * w[1] + eigvecs[:, 2] * w[2])
        return tf.ensure_shape(crop, (p.crop, p.crop, 3)), label

    # Traced once: every epoch's dataset (and each replica's) calls the one graph.
    return tf.function(fn, autograph=False, reduce_retracing=True)
