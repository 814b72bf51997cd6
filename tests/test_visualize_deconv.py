"""The deconvnet against a numpy deconvnet and a transposed-convolution chain; receptive fields."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo.layers import LocalResponseNormalization
from kzoo.visualize.deconv import Deconvnet, crop_patch, patch_box, receptive_field


def _net(pool=True, lrn=False, seed=0):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(3, 3, name="conv1")(inputs)
    if lrn:
        x = LocalResponseNormalization(n=3, k=1.0, alpha=0.5, beta=0.75, name="lrn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    if pool:
        x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    model = keras.Model(inputs, x)
    for layer in (model.get_layer("conv1"), model.get_layer("conv2")):
        kernel, bias = layer.get_weights()
        # positive biases: few exact zeros, so no ties for the max-pool switches
        layer.set_weights([rng.normal(size=kernel.shape), rng.uniform(0.5, 1.0, bias.shape)])
    return model


def _conv(x, w, b):  # valid cross-correlation, (H, W, Ci) x (k, k, Ci, Co)
    k = w.shape[0]
    out = np.zeros((x.shape[0] - k + 1, x.shape[1] - k + 1, w.shape[3]))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.tensordot(x[i : i + k, j : j + k], w, axes=3) + b
    return out


def _conv_down(s, w, shape):  # the transposed convolution, written as scattering
    k, out = w.shape[0], np.zeros(shape)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            out[i : i + k, j : j + k] += np.tensordot(w, s[i, j], axes=([3], [0]))
    return out


def _numpy_deconvnet(model, image, unit):
    (w1, b1), (w2, b2) = model.get_layer("conv1").get_weights(), model.get_layer("conv2").get_weights()
    r1 = np.maximum(_conv(image, w1, b1), 0)
    h, w, c = r1.shape[0] // 2, r1.shape[1] // 2, r1.shape[2]
    p1, switches = np.zeros((h, w, c)), {}
    for i in range(h):
        for j in range(w):
            for ch in range(c):
                window = r1[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, ch]
                di, dj = np.unravel_index(window.argmax(), (2, 2))
                p1[i, j, ch], switches[i, j, ch] = window[di, dj], (2 * i + di, 2 * j + dj)
    r2 = np.maximum(_conv(p1, w2, b2), 0)
    seed = np.zeros_like(r2)
    seed[unit] = r2[unit]  # all other activations of the layer set to zero
    down = _conv_down(np.maximum(seed, 0), w2, p1.shape)
    unpooled = np.zeros_like(r1)
    for (i, j, ch), (y, x) in switches.items():
        unpooled[y, x, ch] = down[i, j, ch]  # unpool with the switches
    return _conv_down(np.maximum(unpooled, 0), w1, image.shape), r2[unit]


def test_projection_equals_a_numpy_deconvnet():
    model = _net()
    images = np.random.default_rng(1).normal(size=(3, 12, 12, 2)).astype("float32")
    deconv, nonzero = Deconvnet(model), 0
    for unit in [(0, 0, 1), (2, 1, 3), (1, 2, 0), (2, 2, 2)]:
        proj, units, values = deconv.project(images, "relu2", feature_map=unit[2], position=unit[:2])
        assert (units == unit).all()
        for image, p, v in zip(images, proj, values):
            expected, value = _numpy_deconvnet(model, image.astype(float), unit)
            assert value == pytest.approx(v, rel=1e-5)
            np.testing.assert_allclose(p, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
            nonzero += np.abs(expected).max() > 0
    assert nonzero >= 6  # of 12: most chosen units are active


def test_without_pooling_it_is_the_gradient_with_rectified_relu_backward():
    model = _net(pool=False)
    image = np.random.default_rng(2).normal(size=(1, 12, 12, 2)).astype("float32")
    proj, units, values = Deconvnet(model).project(image, "relu2")
    (w1, _), (w2, _) = model.get_layer("conv1").get_weights(), model.get_layer("conv2").get_weights()
    seed = np.zeros((1, 8, 8, 4), "float32")
    y, x, c = units[0]
    seed[0, y, x, c] = values[0]
    down = tf.nn.conv2d_transpose(tf.nn.relu(seed), w2, (1, 10, 10, 3), 1, "VALID")
    expected = tf.nn.conv2d_transpose(tf.nn.relu(down), w1, (1, 12, 12, 2), 1, "VALID").numpy()
    np.testing.assert_allclose(proj, expected, rtol=1e-4, atol=1e-5)
    assert values[0] == pytest.approx(keras.Model(model.input, model.output)(image).numpy().max(), rel=1e-6)


def test_lrn_is_skipped_on_the_way_down():
    with_lrn, plain = _net(pool=False, lrn=True), _net(pool=False)
    image = np.random.default_rng(3).normal(size=(1, 12, 12, 2)).astype("float32")
    b, units, vb = Deconvnet(plain).project(image, "relu2")  # the strongest unit: active in both (LRN keeps signs)
    y, x, c = units[0]
    a, _, va = Deconvnet(with_lrn).project(image, "relu2", feature_map=c, position=(y, x))
    assert va != pytest.approx(vb)  # the forward passes differ (LRN) ...
    np.testing.assert_allclose(a / va, b / vb, rtol=1e-4, atol=1e-6)  # ... the way down does not


def test_every_family_projects_inside_the_receptive_field():
    images = np.random.default_rng(4).normal(size=(1, 79, 79, 3)).astype("float32")
    for model, layer in [(kzoo.alexnet(input_shape=(67, 67, 3)), "relu4"),
                         (kzoo.zfnet(input_shape=(64, 64, 3)), "relu3"),
                         (kzoo.overfeat_fast(input_shape=(79, 79, 3)), "relu4"),
                         (kzoo.overfeat_accurate(input_shape=(79, 79, 3)), "relu3"),
                         (kzoo.resnet20(input_shape=(32, 32, 3)), "conv3_block1_out")]:
        proj, units, _ = Deconvnet(model).project(images[:, : model.input_shape[1], : model.input_shape[2]], layer)
        top, left, h, w = patch_box(receptive_field(model, layer), *units[0][:2])
        support = np.argwhere(np.abs(proj[0]).sum(-1) > 0)
        assert len(support) > 0
        assert (support.min(0) >= [top, left]).all() and (support.max(0) < [top + h, left + w]).all()


def test_receptive_fields_match_the_known_values(symbolic):  # shapes only: no weight is read
    alexnet = symbolic(kzoo.alexnet, input_shape=(227, 227, 3))
    assert [receptive_field(alexnet, n)[0][1] for n in ("conv1", "pool1", "conv2", "relu5", "pool5")] == \
        [11, 19, 51, 163, 195]
    assert receptive_field(alexnet, "pool5")[0][0] == 32  # total stride
    zfnet = symbolic(kzoo.zfnet)
    assert receptive_field(zfnet, "conv1")[0][:2] == (2, 7)
    resnet = symbolic(kzoo.resnet50)
    assert receptive_field(resnet, "conv5_block3_out")[1][:2] == (32, 483)


def test_crop_patch_pads_outside_the_image():
    image = np.arange(16, dtype="float32").reshape(4, 4, 1)
    patch = crop_patch(image, (-1, 2, 3, 3), fill=-1)
    np.testing.assert_array_equal(patch[..., 0], [[-1, -1, -1], [2, 3, -1], [6, 7, -1]])


def test_bad_requests_name_the_problem():
    model, image = _net(), np.zeros((1, 12, 12, 2), "float32")
    deconv = Deconvnet(model)
    with pytest.raises(ValueError, match="no layer 'relu9'; valid layers: .*relu1.*relu2"):
        deconv.project(image, "relu9")
    with pytest.raises(ValueError, match=r"position \(5, 0\) is outside the 3x3 map of layer 'relu2'"):
        deconv.project(image, "relu2", position=(5, 0))
    with pytest.raises(ValueError, match="feature_map 7 is outside the 4 maps of layer 'relu2'"):
        deconv.project(image, "relu2", feature_map=7)
    dense = kzoo.alexnet(input_shape=(67, 67, 3))
    with pytest.raises(ValueError, match="'fc6' has output shape .* feature maps"):
        Deconvnet(dense).project(np.zeros((1, 67, 67, 3)), "fc6")
