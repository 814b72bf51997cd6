"""kzoo.layers against independent references: tf.nn ops, plain Keras layers and numpy loops."""

import itertools
import math
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.layers import (  # noqa: E402
    BatchNormalization,
    CeilPadding2D,
    FilterRMSNorm,
    InterleaveOffsets,
    LocalResponseNormalization,
    OffsetMaxPooling2D,
    TowerConv2D,
    ZeroPadShortcut,
    ceil_mode_output,
)
from tests.layer_harness import check_layer  # noqa: E402

CONVENTIONS = ["paper", "cuda-convnet", "caffe", "pytorch"]


def random(shape, seed=0, scale=1.0, offset=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + offset).astype("float32")


# --------------------------------------------------------------------------- harness on every layer


HARNESS_CASES = [  # factory, input shape, number of weights, batch
    pytest.param(lambda: LocalResponseNormalization(name="lrn"), (5, 5, 16), 0, 2, id="lrn-paper"),
    pytest.param(lambda: LocalResponseNormalization(3, 1.0, convention="caffe"), (4, 4, 8), 0, 2, id="lrn-caffe"),
    pytest.param(lambda: TowerConv2D(8, 3, name="conv2"), (7, 7, 6), 4, 2, id="tower"),
    pytest.param(lambda: TowerConv2D(8, 3, use_bias=False), (7, 7, 6), 2, 2, id="tower-nobias"),
    pytest.param(
        lambda: TowerConv2D(8, 3, towers=4, strides=2, padding="same", activation="relu"), (8, 8, 8), 8, 2, id="tower4"
    ),
    pytest.param(
        lambda: TowerConv2D(8, 3, kernel_constraint=FilterRMSNorm(0.1)), (7, 7, 6), 4, 2, id="tower-constraint"
    ),
    pytest.param(lambda: OffsetMaxPooling2D(3), (17, 20, 2), 0, 2, id="offset-pool"),
    pytest.param(lambda: OffsetMaxPooling2D((2, 3)), (9, 11, 2), 0, 2, id="offset-pool-2x3"),
    pytest.param(lambda: InterleaveOffsets(3), (5, 6, 2), 0, 9, id="interleave"),
    pytest.param(
        lambda: keras.layers.Conv2D(4, 3, kernel_constraint=FilterRMSNorm(0.1)), (6, 6, 3), 2, 2, id="filter-rms"
    ),
    pytest.param(lambda: CeilPadding2D(3, 2, 1, value=float("-inf")), (12, 13, 2), 0, 2, id="ceil-pad-inf"),
    pytest.param(lambda: CeilPadding2D(11, 4), (20, 20, 3), 0, 2, id="ceil-pad-conv"),
    pytest.param(lambda: ZeroPadShortcut(8, strides=2), (9, 8, 4), 0, 2, id="zero-pad-shortcut"),
]


@pytest.mark.parametrize("factory, input_shape, n_weights, batch", HARNESS_CASES)
def test_layer_harness(factory, input_shape, n_weights, batch, tmp_path):
    check_layer(factory, input_shape, n_weights, tmp_path, batch=batch)


def test_tower_names_and_constraint_survive_reload(tmp_path):
    _, reloaded = check_layer(
        lambda: TowerConv2D(8, 3, kernel_constraint=FilterRMSNorm(0.25), name="conv4"), (7, 7, 6), 4, tmp_path
    )
    assert [t.name for t in reloaded.towers] == ["conv4_tower0", "conv4_tower1"]
    for tower in reloaded.towers:
        assert isinstance(tower.kernel_constraint, FilterRMSNorm) and tower.kernel_constraint.radius == 0.25


# --------------------------------------------------------------------------- LocalResponseNormalization


def lrn_numpy(a, n, k, alpha, beta):
    a = a.astype("float64")
    channels = a.shape[-1]
    out = np.empty_like(a)
    for c in range(channels):
        lo, hi = max(0, c - n // 2), min(channels, c + n // 2 + 1)
        out[..., c] = a[..., c] / (k + alpha * np.sum(a[..., lo:hi] ** 2, axis=-1)) ** beta
    return out


def alpha_of(convention, alpha, n):
    return alpha if convention == "paper" else alpha / n


LRN_SETTINGS = [
    dict(n=5, k=2.0, alpha=1e-4, beta=0.75),  # AlexNet
    dict(n=3, k=1.0, alpha=1e-4, beta=0.75),  # Caffe-like
    dict(n=7, k=1.0, alpha=1e-3, beta=0.5),
]


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("settings", LRN_SETTINGS, ids=lambda s: f"n{s['n']}-k{s['k']:g}")
def test_lrn_matches_tf_and_numpy(convention, settings):
    # Large activations, so the window sum moves the denominator well beyond rtol.
    x = random((2, 4, 5, 16), scale=30.0)
    y = np.asarray(LocalResponseNormalization(**settings, convention=convention)(x))

    n, k, alpha, beta = settings["n"], settings["k"], settings["alpha"], settings["beta"]
    alpha = alpha_of(convention, alpha, n)
    tf_ref = tf.nn.local_response_normalization(x, depth_radius=n // 2, bias=k, alpha=alpha, beta=beta)
    np.testing.assert_allclose(y, tf_ref, rtol=1e-5)
    np.testing.assert_allclose(y, lrn_numpy(x, n, k, alpha, beta), rtol=1e-5)
    assert not np.allclose(y, x / k**beta, rtol=1e-3)


@pytest.mark.parametrize("convention", ["paper", "caffe"])
def test_lrn_gradient_matches_tf(convention):
    x = tf.constant(random((2, 3, 3, 16), seed=1, scale=30.0))
    projection = random((2, 3, 3, 16), seed=2)
    layer = LocalResponseNormalization(n=5, k=2.0, alpha=1e-3, beta=0.75, convention=convention)

    def grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * projection)
        return tape.gradient(loss, x)

    alpha = alpha_of(convention, 1e-3, 5)
    reference = grad(lambda v: tf.nn.local_response_normalization(v, 2, bias=2.0, alpha=alpha, beta=0.75))
    np.testing.assert_allclose(grad(layer), reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(n=4), dict(n=0), dict(n=5.0), dict(convention="torch")])
def test_lrn_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        LocalResponseNormalization(**kwargs)


# --------------------------------------------------------------------------- TowerConv2D


def tower_reference(layer, x, filters, kernel_size, strides, padding, activation):
    """Two plain Conv2D on the channel halves, weights copied from the towers, concatenated."""
    refs = []
    for tower in layer.towers:
        ref = keras.layers.Conv2D(filters // 2, kernel_size, strides=strides, padding=padding)
        ref.build((None, None, None, x.shape[-1] // 2))
        ref.set_weights([np.array(tower.kernel), np.array(tower.bias)])
        refs.append(ref)

    def call(v):
        halves = tf.split(v, 2, axis=-1)
        return keras.activations.get(activation)(tf.concat([r(h) for r, h in zip(refs, halves)], axis=-1))

    return call, [w for r in refs for w in (r.kernel, r.bias)]


def value_and_grads(fn, x, weights, projection):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * projection)
    return y, tape.gradient(loss, [x, *weights])


@pytest.mark.parametrize(
    "strides, padding, activation", [(1, "valid", None), (2, "same", None), (2, "valid", "relu"), (1, "same", "relu")]
)
def test_tower_conv_matches_two_convs(strides, padding, activation):
    x = tf.constant(random((2, 9, 10, 6)))
    layer = TowerConv2D(
        8, 3, strides=strides, padding=padding, activation=activation, bias_initializer="glorot_uniform"
    )
    layer.build(x.shape)
    reference, ref_weights = tower_reference(layer, x, 8, 3, strides, padding, activation)
    weights = [w for t in layer.towers for w in (t.kernel, t.bias)]

    projection = random(layer.compute_output_shape(x.shape), seed=3)
    y, grads = value_and_grads(layer, x, weights, projection)
    y_ref, grads_ref = value_and_grads(reference, x, ref_weights, projection)

    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)


def test_tower_conv_towers_see_only_their_channels():
    # Perturbing the second half of the channels must leave tower 0's outputs untouched.
    layer = TowerConv2D(8, 3)
    x = random((1, 6, 6, 6))
    x2 = x.copy()
    x2[..., 3:] += 1.0
    y, y2 = np.asarray(layer(x)), np.asarray(layer(x2))
    np.testing.assert_array_equal(y[..., :4], y2[..., :4])
    assert not np.allclose(y[..., 4:], y2[..., 4:])


def test_tower_conv_names_and_shapes():
    layer = TowerConv2D(96, 5, name="conv2")
    layer.build((None, 27, 27, 48))
    assert [t.name for t in layer.towers] == ["conv2_tower0", "conv2_tower1"]
    for tower in layer.towers:
        assert tuple(tower.kernel.shape) == (5, 5, 24, 48)
        assert tuple(tower.bias.shape) == (48,)
    assert layer.compute_output_shape((None, 27, 27, 48)) == (None, 23, 23, 96)


def test_tower_conv_follows_its_dtype_policy():
    x = np.zeros((1, 5, 5, 4))
    assert keras.backend.standardize_dtype(TowerConv2D(8, 3, dtype="float64")(x).dtype) == "float64"
    mixed = TowerConv2D(8, 3, dtype="mixed_float16")
    y = mixed(x.astype("float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert all(t.kernel.dtype == "float32" for t in mixed.towers)  # variables stay float32


def test_tower_conv_rejects_indivisible_filters_and_channels():
    with pytest.raises(ValueError, match="filters"):
        TowerConv2D(7, 3)
    with pytest.raises(ValueError, match="input channels"):
        TowerConv2D(8, 3)(random((1, 5, 5, 5)))
    with pytest.raises(ValueError, match="devices"):
        TowerConv2D(8, 3, devices=["cpu:0"])
    with pytest.raises(ValueError):
        TowerConv2D(8, 3, towers=0)


def test_tower_conv_devices_give_same_result():
    x = random((1, 6, 6, 4))
    plain = TowerConv2D(4, 3)
    placed = TowerConv2D(4, 3, devices=["cpu:0", "cpu:0"])
    plain.build(x.shape)
    placed.build(x.shape)
    placed.set_weights(plain.get_weights())
    np.testing.assert_allclose(placed(x), plain(x), rtol=1e-6)


def test_tower_conv_in_tf_function():
    x = tf.constant(random((2, 8, 8, 4)))
    layer = TowerConv2D(6, 3, strides=2, padding="same")
    layer.build(x.shape)
    projection = random(layer.compute_output_shape(x.shape), seed=4)

    compiled = tf.function(lambda v: value_and_grads(layer, v, layer.trainable_weights, projection), jit_compile=False)
    y, grads = compiled(x)
    y_eager, grads_eager = value_and_grads(layer, x, layer.trainable_weights, projection)
    np.testing.assert_allclose(y, y_eager, rtol=1e-5, atol=1e-6)
    assert len(grads) == 1 + 4
    for g, g_eager in zip(grads, grads_eager):
        assert np.any(np.asarray(g) != 0)
        np.testing.assert_allclose(g, g_eager, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- OffsetMaxPooling2D / InterleaveOffsets


def offset_pool_numpy(x, sy, sx):
    batch, height, width, channels = x.shape
    oh, ow = (height - sy + 1) // sy, (width - sx + 1) // sx
    out = np.empty((batch * sy * sx, oh, ow, channels), x.dtype)
    for b in range(batch):
        for dy in range(sy):
            for dx in range(sx):
                for i in range(oh):
                    for j in range(ow):
                        r, c = dy + i * sy, dx + j * sx
                        out[b * sy * sx + dy * sx + dx, i, j] = x[b, r : r + sy, c : c + sx].max(axis=(0, 1))
    return out


def interleave_numpy(z, sy, sx):
    n, h, w, k = z.shape
    out = np.empty((n // (sy * sx), h * sy, w * sx, k), z.dtype)
    for b in range(n // (sy * sx)):
        for dy in range(sy):
            for dx in range(sx):
                for i in range(h):
                    for j in range(w):
                        out[b, i * sy + dy, j * sx + dx] = z[b * sy * sx + dy * sx + dx, i, j]
    return out


OFFSET_CASES = [  # (height, width), pool, pooled (height, width): floor((L - s + 1) / s)
    ((17, 17), (3, 3), (5, 5)),
    ((18, 18), (3, 3), (5, 5)),
    ((20, 20), (3, 3), (6, 6)),
    ((17, 20), (3, 3), (5, 6)),
    ((17, 17), (2, 2), (8, 8)),
    ((18, 18), (2, 2), (8, 8)),
    ((20, 17), (2, 2), (9, 8)),
    ((17, 20), (2, 3), (8, 6)),
    ((5, 5), (3, 3), (1, 1)),  # the smallest map: 2s - 1
]
OFFSET_IDS = [f"{h}x{w}-pool{sy}x{sx}" for (h, w), (sy, sx), _ in OFFSET_CASES]


@pytest.mark.parametrize("size, pool, pooled", OFFSET_CASES, ids=OFFSET_IDS)
def test_offset_max_pooling_matches_numpy(size, pool, pooled):
    x = random((2, *size, 3))
    y = np.asarray(OffsetMaxPooling2D(pool)(x))
    assert y.shape == (2 * pool[0] * pool[1], *pooled, 3)
    np.testing.assert_array_equal(y, offset_pool_numpy(x, *pool))


@pytest.mark.parametrize("size, pool, pooled", OFFSET_CASES, ids=OFFSET_IDS)
def test_interleaved_offset_pooling(size, pool, pooled):
    x = random((2, *size, 3), seed=5)
    y = np.asarray(InterleaveOffsets(pool)(OffsetMaxPooling2D(pool)(x)))
    np.testing.assert_array_equal(y, interleave_numpy(offset_pool_numpy(x, *pool), *pool))
    # Interleaving all offsets is a dense stride-1 max-pool, cropped to whole windows.
    dense = tf.nn.max_pool2d(x, pool, strides=1, padding="VALID")
    np.testing.assert_array_equal(y, dense[:, : pooled[0] * pool[0], : pooled[1] * pool[1]])


@pytest.mark.parametrize("pool", [3, 2, (2, 3)])
def test_interleave_offsets_matches_numpy(pool):
    sy, sx = (pool, pool) if isinstance(pool, int) else pool
    z = random((2 * sy * sx, 4, 5, 3), seed=6)
    np.testing.assert_array_equal(InterleaveOffsets(pool)(z), interleave_numpy(z, sy, sx))


@pytest.mark.parametrize("size, pool", [((4, 4), 3), ((2, 2), 2), ((17, 4), 3), ((4, 17), 3), ((2, 20), (2, 3))])
def test_offset_max_pooling_rejects_small_maps(size, pool):
    with pytest.raises(ValueError, match="too small"):
        OffsetMaxPooling2D(pool)(random((1, *size, 2)))


# --------------------------------------------------------------------------- FilterRMSNorm


def filter_rms(w):
    w = np.asarray(w, "float64")
    return np.sqrt(np.mean(w.reshape(-1, w.shape[-1]) ** 2, axis=0))


def with_filter_rms(shape, rms, seed=0):
    """A kernel whose filter i (last axis) has RMS exactly rms[i]."""
    w = random(shape, seed=seed).astype("float64")
    return (w / filter_rms(w) * np.asarray(rms)).astype("float32")


def renorm_numpy(w, radius):
    rms = filter_rms(w)
    return np.asarray(w, "float64") * np.where(rms > radius, radius / rms, 1.0)


def test_filter_rms_norm_crafted_filters():
    w = with_filter_rms((3, 3, 4, 2), [0.5, 0.05])
    out = np.asarray(FilterRMSNorm(0.1)(tf.constant(w)))
    np.testing.assert_allclose(filter_rms(out)[0], 0.1, rtol=1e-6)
    np.testing.assert_allclose(out[..., 0], w[..., 0] * 0.2, rtol=1e-5)  # same direction, scaled by 0.1 / 0.5
    np.testing.assert_array_equal(out[..., 1], w[..., 1])


@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (5, 5, 3, 8), (16, 5)])
def test_filter_rms_norm_is_per_filter(shape):
    rms = np.random.default_rng(7).uniform(0.01, 1.0, shape[-1])
    rms[:2] = [0.02, 0.9]  # at least one on each side of the radius
    w = with_filter_rms(shape, rms)
    out = np.asarray(FilterRMSNorm(0.1)(tf.constant(w)))
    np.testing.assert_allclose(out, renorm_numpy(w, 0.1), rtol=1e-5)
    np.testing.assert_allclose(filter_rms(out), np.minimum(rms, 0.1), rtol=1e-5)


def test_filter_rms_norm_config():
    constraint = FilterRMSNorm(0.3)
    assert constraint.get_config() == {"radius": 0.3}
    revived = keras.constraints.get(keras.constraints.serialize(constraint))
    assert isinstance(revived, FilterRMSNorm) and revived.radius == 0.3
    for radius in (0, -0.1):
        with pytest.raises(ValueError):
            FilterRMSNorm(radius)


def rms_model(constrained, kernel):
    constraint = FilterRMSNorm(0.1) if constrained else None
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(6, 3, kernel_constraint=constraint, name="conv")
    model = keras.Model(inputs, keras.layers.Flatten()(conv(inputs)))
    conv.set_weights([kernel, np.zeros(6, "float32")])
    model.compile(keras.optimizers.SGD(learning_rate=5.0), "mse", jit_compile=False)
    return model


def test_filter_rms_norm_after_sgd_step():
    kernel = with_filter_rms((3, 3, 3, 6), np.full(6, 0.05))
    x, target = random((4, 8, 8, 3), seed=8), random((4, 6 * 6 * 6), seed=9, scale=5.0)
    free, constrained = rms_model(False, kernel), rms_model(True, kernel)
    for model in (free, constrained):
        model.fit(x, target, batch_size=4, epochs=1, shuffle=False, verbose=0)

    free_kernel = np.asarray(free.get_layer("conv").kernel)
    new_kernel = np.asarray(constrained.get_layer("conv").kernel)
    assert filter_rms(free_kernel).max() > 0.2  # the step does leave the ball
    assert np.all(filter_rms(new_kernel) <= 0.1 + 1e-6)
    # The constraint is the projection of the very same update.
    np.testing.assert_allclose(new_kernel, renorm_numpy(free_kernel, 0.1), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- CeilPadding2D / ceil_mode_output


def caffe_pooled(length, kernel, stride, pad):
    """Caffe's PoolingLayer::Reshape, transcribed."""
    pooled = int(math.ceil(float(length + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= length + pad:
        pooled -= 1
    return pooled


def caffe_max_pool_numpy(x, kernel, stride, pad):
    """Caffe's max-pooling forward: windows clipped to the image, so padding never wins."""
    _, height, width, _ = x.shape
    oh, ow = caffe_pooled(height, kernel, stride, pad), caffe_pooled(width, kernel, stride, pad)
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
    for i in range(oh):
        r0 = i * stride - pad
        r1 = min(r0 + kernel, height + pad, height)
        for j in range(ow):
            c0 = j * stride - pad
            c1 = min(c0 + kernel, width + pad, width)
            out[:, i, j] = x[:, max(r0, 0) : r1, max(c0, 0) : c1].max(axis=(1, 2))
    return out


@pytest.mark.parametrize(
    "length, kernel, stride, pad, expected",
    [
        (110, 3, 2, 0, 55),  # ZFNet: 110 -> 55 -> 27 -> 13 -> 6
        (55, 3, 2, 0, 27),
        (26, 3, 2, 0, 13),
        (13, 3, 2, 0, 6),
        (224, 11, 4, 0, 55),  # cuda-convnet AlexNet conv1
        (13, 3, 2, 1, 7),
        (4, 2, 2, 1, 3),
        (5, 2, 2, 1, 3),  # the last window would start in the end padding: dropped
        (3, 2, 2, 1, 2),
    ],
)
def test_ceil_mode_output_values(length, kernel, stride, pad, expected):
    assert ceil_mode_output(length, kernel, stride, pad) == expected


def test_ceil_mode_output_matches_caffe_everywhere():
    grid = itertools.product(range(1, 40), range(1, 8), range(1, 5), range(4))
    cases = [(n, k, s, p) for n, k, s, p in grid if n + 2 * p >= k]
    assert [ceil_mode_output(*c) for c in cases] == [caffe_pooled(*c) for c in cases]


def ceil_pool(x, kernel, stride, pad=0, value=float("-inf")):
    padded = CeilPadding2D(kernel, stride, padding=pad, value=value)(x)
    return np.asarray(keras.layers.MaxPooling2D(kernel, stride, padding="valid")(padded))


@pytest.mark.parametrize(
    "size, kernel, stride, pad, pooled",
    [
        ((110, 110), 3, 2, 0, (55, 55)),
        ((26, 26), 3, 2, 0, (13, 13)),
        ((13, 13), 3, 2, 0, (6, 6)),
        ((13, 26), 3, 2, 0, (6, 13)),
        ((13, 14), 3, 2, 1, (7, 8)),
        ((5, 3), 2, 2, 1, (3, 2)),
        ((12, 7), 3, 3, 1, (5, 3)),
    ],
)
def test_ceil_padding_max_pool_matches_caffe(size, kernel, stride, pad, pooled):
    # All-negative inputs: a -inf pad must never win, where a 0 pad would.
    x = random((2, *size, 3), offset=-10.0)
    y = ceil_pool(x, kernel, stride, pad)
    assert y.shape == (2, *pooled, 3)
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(y, caffe_max_pool_numpy(x, kernel, stride, pad))


def test_ceil_padding_pads_the_partial_window():
    x = random((1, 26, 26, 2), offset=-10.0)
    with_zeros = ceil_pool(x, 3, 2, value=0.0)
    # The last window row/column takes in one padded line (26 + 1 = 2 * 12 + 3).
    assert np.all(with_zeros[:, -1] == 0) and np.all(with_zeros[:, :, -1] == 0)
    assert np.all(with_zeros[:, :-1, :-1] < 0)


def test_ceil_padding_for_convolution():
    # cuda-convnet's AlexNet conv1: 224 -> 227 with 3 zero lines after, then 11x11 stride 4 gives 55.
    x = random((1, 224, 224, 3))
    layer = CeilPadding2D(11, 4)
    y = np.asarray(layer(x))
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (0, 3), (0, 3), (0, 0)]))
    assert layer.compute_output_shape((None, 224, 224, 3)) == (None, 227, 227, 3)
    assert keras.layers.Conv2D(1, 11, strides=4).compute_output_shape(y.shape)[1:3] == (55, 55)


@pytest.mark.parametrize("size, kernel, stride, pad", [((26, 13), 3, 2, 0), ((13, 14), 3, 2, 1), ((5, 3), 2, 2, 1)])
def test_ceil_padding_unknown_spatial_size(size, kernel, stride, pad):
    layer = CeilPadding2D(kernel, stride, padding=pad, value=float("-inf"))
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 2))])
    x = random((1, *size, 2))
    np.testing.assert_array_equal(dynamic(x), layer(x))


# --------------------------------------------------------------------------- ZeroPadShortcut


@pytest.mark.parametrize(
    "in_channels, filters, strides, size", [(16, 32, 2, 8), (16, 32, 2, 9), (16, 16, 1, 8), (3, 8, 3, 10), (4, 4, 2, 7)]
)
def test_zero_pad_shortcut_matches_numpy(in_channels, filters, strides, size):
    x = random((2, size, size, in_channels))
    layer = ZeroPadShortcut(filters, strides)
    sub = x[:, ::strides, ::strides, :]
    expected = np.concatenate([sub, np.zeros((*sub.shape[:3], filters - in_channels), "float32")], axis=-1)
    y = np.asarray(layer(x))
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape(x.shape) == y.shape


def test_zero_pad_shortcut_rejects_fewer_filters():
    with pytest.raises(ValueError, match="shrink"):
        ZeroPadShortcut(8, 2)(random((1, 4, 4, 16)))


# --- BatchNormalization: Keras' layer, folded in inference, fused in training -------------------

def _conv_bn(bn_class, dtype, seed=0):
    """A Conv2D (stride 2, with a bias) and its batch norm, with non-trivial statistics."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((9, 11, 3))
    conv = keras.layers.Conv2D(8, 3, strides=2, padding="same", dtype=dtype, name="conv")
    model = keras.Model(inputs, bn_class(momentum=0.9, epsilon=1e-5, dtype=dtype, name="bn")(conv(inputs)))
    conv.set_weights([rng.normal(0, 0.3, (3, 3, 3, 8)), rng.normal(0, 0.1, 8)])
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.5, 8),
                                       rng.uniform(0.5, 2.0, 8)])
    return model


def _conv2d_ops(fn, x):
    return [op for op in fn.get_concrete_function(x).graph.get_operations() if op.type == "Conv2D"]


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_batch_norm_folds_into_its_conv_in_compiled_inference(dtype):
    ours, keras_bn = _conv_bn(BatchNormalization, dtype), _conv_bn(keras.layers.BatchNormalization, dtype)
    x = random((4, 9, 11, 3), scale=2.0)
    folded = tf.function(lambda v: ours(v, training=False))
    # the fold is a second convolution, of the conv's input with the rescaled kernel (the first is pruned)
    assert len(_conv2d_ops(folded, x)) == 2
    assert len(_conv2d_ops(tf.function(lambda v: keras_bn(v, training=False)), x)) == 1
    got, want = np.float32(folded(x)), np.float32(keras_bn(x, training=False))
    assert np.abs(want).max() > 1.0
    # float32: rounding only; bfloat16: the folded kernel and the output rounded to 8 bits (3e-3 each)
    np.testing.assert_allclose(got, want, atol={"float32": 1e-5, "mixed_bfloat16": 0.05}[dtype] * np.abs(want).max())
    np.testing.assert_array_equal(np.float32(ours(x, training=False)), want)  # eager: Keras' own computation
    assert got.dtype == np.float32 and folded(x).dtype == {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16}[dtype]


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_batch_norm_trains_as_keras_on_the_fused_kernel(dtype):
    ours, keras_bn = _conv_bn(BatchNormalization, dtype), _conv_bn(keras.layers.BatchNormalization, dtype)
    x = tf.constant(random((4, 9, 11, 3), scale=2.0, offset=1.0))
    r = tf.constant(random((4, 5, 6, 8), seed=1))  # a loss the normalization does not cancel
    results = []
    for model in (ours, keras_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.function(lambda v, m=model: m(v, training=True))(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * r)
        grads = tape.gradient(loss, [x, *model.trainable_variables])
        results.append((np.float32(y), [np.asarray(g) for g in grads], [np.asarray(w) for w in model.weights]))
    (y1, g1, w1), (y2, g2, w2) = results
    tol = {"float32": 1e-5, "mixed_bfloat16": 1e-2}[dtype]
    np.testing.assert_allclose(y1, y2, atol=tol * np.abs(y2).max())
    scale = max(np.abs(g).max() for g in g2)
    for a, b in zip(g1, g2):  # the input, the conv's kernel and bias (0: the mean cancels it), gamma, beta
        np.testing.assert_allclose(a, b, atol=tol * scale)
    for a, b in zip(w1, w2):  # the moving mean and (biased, as Keras') variance moved alike
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(w1[-1], _conv_bn(BatchNormalization, dtype).get_layer("bn").moving_variance)


def test_batch_norm_relinks_its_conv_in_a_saved_model(tmp_path):
    model = _conv_bn(BatchNormalization, "float32")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(again.get_layer("bn"), BatchNormalization)
    assert again.get_layer("bn").conv is again.get_layer("conv")
    x = random((2, 9, 11, 3))
    np.testing.assert_array_equal(tf.function(lambda v: again(v, training=False))(x),
                                  tf.function(lambda v: model(v, training=False))(x))
    keras_bn = _conv_bn(keras.layers.BatchNormalization, "float32")  # Keras' weights file loads into ours
    keras_bn.save_weights(tmp_path / "k.weights.h5")
    model.load_weights(tmp_path / "k.weights.h5")
    for a, b in zip(model.weights, keras_bn.weights):
        np.testing.assert_array_equal(a, b)
