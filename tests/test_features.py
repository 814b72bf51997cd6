"""kzoo.feature_extractor: each stage's output by default, the model's own weights (under JAX:
tests/test_backends.py)."""

import numpy as np
import pytest

import keras

import kzoo
from kzoo.registry import get_entry
from kzoo.visualize.common import last_feature_layer

# Each family's default keys and their (H, W, C) at the paper's input size (SPEC.md): the
# rectified conv maps of the 2012-13 nets, the stem and each stage's last block of ResNets.
PAPER = {
    "alexnet": (224, {"relu1": (55, 55, 96), "relu2": (27, 27, 256), "relu3": (13, 13, 384),
                      "relu4": (13, 13, 384), "relu5": (13, 13, 256)}),
    "zfnet": (224, {"relu1": (110, 110, 96), "relu2": (26, 26, 256), "relu3": (13, 13, 384),
                    "relu4": (13, 13, 384), "relu5": (13, 13, 256)}),
    "overfeat_fast": (231, {"relu1": (56, 56, 96), "relu2": (24, 24, 256), "relu3": (12, 12, 512),
                            "relu4": (12, 12, 1024), "relu5": (12, 12, 1024)}),
    "overfeat_accurate": (221, {"relu1": (108, 108, 96), "relu2": (30, 30, 256), "relu3": (15, 15, 512),
                                "relu4": (15, 15, 512), "relu5": (15, 15, 1024), "relu6": (15, 15, 1024)}),
    "resnet18": (224, {"conv1_relu": (112, 112, 64), "conv2_block2_out": (56, 56, 64),
                       "conv3_block2_out": (28, 28, 128), "conv4_block2_out": (14, 14, 256),
                       "conv5_block2_out": (7, 7, 512)}),
    "resnet50": (224, {"conv1_relu": (112, 112, 64), "conv2_block3_out": (56, 56, 256),
                       "conv3_block4_out": (28, 28, 512), "conv4_block6_out": (14, 14, 1024),
                       "conv5_block3_out": (7, 7, 2048)}),
    "plain18": (224, {"conv1_relu": (112, 112, 64), "conv2_block2_out": (56, 56, 64),
                      "conv3_block2_out": (28, 28, 128), "conv4_block2_out": (14, 14, 256),
                      "conv5_block2_out": (7, 7, 512)}),
    "resnet20": (32, {"conv1_relu": (32, 32, 16), "conv2_block3_out": (32, 32, 16),
                      "conv3_block3_out": (16, 16, 32), "conv4_block3_out": (8, 8, 64)}),
    "plain20": (32, {"conv1_relu": (32, 32, 16), "conv2_block3_out": (32, 32, 16),
                     "conv3_block3_out": (16, 16, 32), "conv4_block3_out": (8, 8, 64)}),
}


def walk(model, x):
    """Every layer's output on `x`, computed a second way: each layer called on its own on
    the values of the layers feeding it, in graph order (no keras.Model is built)."""
    values, out = {id(model.inputs[0]): x}, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        inputs = layer.input
        args = [values[id(t)] for t in inputs] if isinstance(inputs, (list, tuple)) else values[id(inputs)]
        values[id(layer.output)] = y = layer(args, training=False)
        out[layer.name] = keras.ops.convert_to_numpy(y)
    return out


def images(n, size, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def small():
    """Each family's classifier at the smallest input the registry allows, built once."""
    cache = {}

    def get(name):
        if name not in cache:
            size = get_entry(name).min_size
            cache[name] = kzoo.create_model(name, input_shape=(size, size, 3), classes=10)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(PAPER))
def test_default_layers_are_the_stages_at_the_papers_sizes(name):
    size, expected = PAPER[name]
    model = kzoo.create_model(name, include_top=False, input_shape=(None, None, 3))
    features = kzoo.feature_extractor(model)
    spec = features.compute_output_spec(keras.KerasTensor((1, size, size, 3)))  # shapes only: nothing runs
    assert list(spec) == list(expected)
    assert {key: tuple(value.shape[1:]) for key, value in spec.items()} == expected


@pytest.mark.parametrize("name", list(PAPER))
def test_classifier_stages_equal_its_layers_run_one_by_one(name, small):
    model = small(name)
    features = kzoo.feature_extractor(model)
    assert list(features.output) == list(PAPER[name][1])  # the FC layers' ReLUs are no stage
    assert last_feature_layer(model) == list(PAPER[name][1])[-1]  # occlusion's and top-9's default
    x = images(2, model.inputs[0].shape[1])
    reference = walk(model, x)
    # the walk reproduces the model (its last layer is the output), so it is a valid reference
    np.testing.assert_allclose(reference[model.layers[-1].name], keras.ops.convert_to_numpy(model(x, training=False)),
                               rtol=1e-5, atol=1e-6)
    out = features(x)
    for key in PAPER[name][1]:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[key]), reference[key], rtol=1e-5, atol=1e-5)


def test_the_extractor_shares_the_models_weights(small):
    model = small("resnet20")
    features = kzoo.feature_extractor(model, ["conv2_block1_out", "conv4_block3_out"])
    assert features.get_layer("conv1_conv") is model.get_layer("conv1_conv")  # no copy
    x = images(2, 8, seed=1)
    before = keras.ops.convert_to_numpy(features(x)["conv4_block3_out"])
    conv = model.get_layer("conv2_block1_1_conv")
    conv.kernel.assign(conv.kernel * -2.0)
    after = features(x)
    reference = walk(model, x)
    assert not np.allclose(keras.ops.convert_to_numpy(after["conv4_block3_out"]), before)
    for key in ("conv2_block1_out", "conv4_block3_out"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(after[key]), reference[key], rtol=1e-5, atol=1e-5)


def test_named_layers_keep_their_order_and_one_name_is_enough(small):
    model = small("alexnet")
    x = images(1, 64)
    reference = walk(model, x)
    features = kzoo.feature_extractor(model, ["pool5", "lrn1", "relu7"])
    out = features(x)
    assert list(out) == ["pool5", "lrn1", "relu7"] and features.name == f"{model.name}_features"
    for key in out:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[key]), reference[key], rtol=1e-5, atol=1e-5)
    assert list(kzoo.feature_extractor(model, "fc8")(x)) == ["fc8"]


def test_bad_layers_name_the_problem(small):
    model = small("resnet20")
    with pytest.raises(ValueError, match=r"has no layer 'relu5'; valid layers: input, conv1_conv, conv1_bn"):
        kzoo.feature_extractor(model, ["conv1_relu", "relu5"])
    with pytest.raises(ValueError, match="layers is empty"):
        kzoo.feature_extractor(model, [])
    with pytest.raises(ValueError, match="'conv1_relu' more than once"):
        kzoo.feature_extractor(model, ["conv1_relu", "conv2_block1_out", "conv1_relu"])
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    other = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(hidden), name="mine")
    with pytest.raises(ValueError, match=r"'mine' has no stages kzoo knows .*layers=\[\.\.\.\]"):
        kzoo.feature_extractor(other)
    assert kzoo.feature_extractor(other, ["features"]).output["features"].shape == (None, 6, 6, 4)
