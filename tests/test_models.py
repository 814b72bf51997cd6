"""Every registered model against SPEC: counts, sizes, multiply-adds, names, init, API."""

import math

import keras
import numpy as np
import pytest

import kzoo
from kzoo.layers import FilterRMSNorm, TowerConv2D
from kzoo.models.common import deep_graph_recursion
from kzoo.registry import get_entry
from kzoo.utils import count_macs

ISSUE_MODELS = [
    "alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "plain18", "plain34", "resnet20", "resnet32", "resnet44", "resnet56",
    "resnet110", "resnet1202", "plain20", "plain32", "plain44", "plain56", "plain110",
]
# SPEC's numbers, restated here so that a wrong registry entry cannot pass.
SPEC_PARAMS = {
    "alexnet": 60_965_224, "zfnet": 62_357_608, "overfeat_fast": 145_920_872,
    "overfeat_accurate": 144_656_488, "resnet18": 11_689_512, "resnet34": 21_797_672,
    "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "resnet1202": 19_421_274,
}
SPEC_MACS = {"resnet18": 1.8e9, "resnet34": 3.6e9, "resnet50": 3.8e9, "resnet101": 7.6e9,
             "resnet152": 11.3e9, "plain18": 1.8e9, "plain34": 3.6e9}
PROJECTIONS_18_34 = 64 * 128 + 2 * 128 + 128 * 256 + 2 * 256 + 256 * 512 + 2 * 512


def trainable(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def hw(model, layer):
    return tuple(model.get_layer(layer).output.shape[1:3])


def test_registry_has_exactly_the_issue_models():
    assert sorted(kzoo.list_models()) == sorted(ISSUE_MODELS)
    assert kzoo.list_models(paper="alexnet") == ["alexnet"]
    for name in ISSUE_MODELS:
        assert getattr(kzoo, name) is get_entry(name).builder


@pytest.mark.parametrize("name", ISSUE_MODELS)
def test_trainable_parameters(built, name):
    spec = SPEC_PARAMS.get(name)
    if name.startswith("plain"):
        # plain-18/34: ResNet minus its projections; CIFAR option A shortcuts have no parameters.
        spec = SPEC_PARAMS["resnet" + name[5:]] - (PROJECTIONS_18_34 if name in ("plain18", "plain34") else 0)
    assert get_entry(name).expected.params == spec
    assert trainable(built(name)) == spec


@pytest.mark.parametrize("name", ISSUE_MODELS)
def test_feature_map_sizes(built, name):
    model = built(name)
    for layer, size in get_entry(name).expected.sizes.items():
        if layer == "input":
            assert model.inputs[0].shape[1:3] == (size, size)
        elif len(model.get_layer(layer).output.shape) == 2:
            assert size == 1, layer
        else:
            assert hw(model, layer) == (size, size), layer


# ResNet Table 1 (ImageNet, 224 px) and §4.2 (CIFAR, 32 px) as literals: each stage's last
# block and its map side; the block after it must not exist.
IMAGENET_STAGES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
CIFAR_BLOCKS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}


@pytest.mark.parametrize("name", [n for n in ISSUE_MODELS if n.startswith(("resnet", "plain"))])
def test_resnet_stage_maps_are_the_papers(built, name):
    model, depth = built(name), int(name.lstrip("resnetplain"))
    if depth in IMAGENET_STAGES:
        expected = {"conv1_relu": 112, "pool1_pool": 56}
        expected.update({f"conv{s}_block{n}_out": side
                         for s, n, side in zip((2, 3, 4, 5), IMAGENET_STAGES[depth], (56, 28, 14, 7))})
        stages = zip((2, 3, 4, 5), IMAGENET_STAGES[depth])
    else:
        n = CIFAR_BLOCKS[depth]
        expected = {"conv1_relu": 32, f"conv2_block{n}_out": 32, f"conv3_block{n}_out": 16, f"conv4_block{n}_out": 8}
        stages = ((s, n) for s in (2, 3, 4))
    assert {layer: hw(model, layer)[0] for layer in expected} == expected
    names = {layer.name for layer in model.layers}
    assert not [s for s, n in stages if f"conv{s}_block{n + 1}_out" in names]


def test_spec_sizes_are_all_registered():
    # The SPEC tables, so that an entry that drops a layer cannot pass.
    assert list(get_entry("alexnet").expected.sizes.values()) == [55, 27, 27, 13, 13, 13, 13, 6]
    zf = get_entry("zfnet").expected.sizes
    assert [zf[k] for k in ("conv1", "pool1", "conv2", "pool2", "pool5")] == [110, 55, 26, 13, 6]
    fast = get_entry("overfeat_fast").expected.sizes
    assert [fast[k] for k in ("input", "conv2", "pool2", "conv3", "conv4", "pool5", "fc6", "fc7")] == [
        231, 24, 12, 12, 12, 6, 1, 1]
    acc = get_entry("overfeat_accurate").expected.sizes
    assert [acc[k] for k in ("input", "pool1", "pool2", "conv3", "conv4", "conv5", "pool6", "fc7", "fc8")] == [
        221, 36, 15, 15, 15, 15, 5, 1, 1]
    assert sorted(get_entry("resnet50").expected.sizes.values()) == [7, 14, 28, 56, 56, 112]
    assert sorted(get_entry("resnet110").expected.sizes.values()) == [8, 16, 32, 32]


def test_alexnet_neurons_per_layer(built):
    model = built("alexnet")
    neurons = [math.prod(model.get_layer(n).output.shape[1:]) for n in
               ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")]
    # The paper's 253,440 for conv1 is a misprint for 55*55*96.
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]


@pytest.mark.parametrize("name", sorted(SPEC_MACS))
def test_resnet_multiply_adds_within_2_percent(built, name):
    assert count_macs(built(name)) == pytest.approx(SPEC_MACS[name], rel=0.02)


def test_resnet_v15_multiply_adds_and_same_params(symbolic):
    model = symbolic(kzoo.resnet50, stride_placement="v1.5")
    assert count_macs(model) == pytest.approx(4.09e9, rel=0.005)  # SPEC: 4.09 with v1.5 stride
    assert trainable(model) == SPEC_PARAMS["resnet50"]
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)


def test_alexnet_224_and_227_give_the_same_maps(symbolic):
    for size in (224, 227):
        model = symbolic(kzoo.alexnet, input_shape=(size, size, 3))
        assert [hw(model, n)[0] for n in ("conv1", "pool1", "pool2", "pool5")] == [55, 27, 13, 6]
    assert model.get_layer("conv1_pad").output.shape[1] == 227


def test_alexnet_paper_options(symbolic):
    one = symbolic(kzoo.alexnet, towers=1)
    # §3.2: half the kernels in conv1-4, conv5 and the FC layers unchanged.
    convs = [(11, 3, 48), (5, 48, 128), (3, 128, 192), (3, 192, 192), (3, 192, 256)]
    fcs = 6 * 6 * 256 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert trainable(one) == sum(k * k * i * o + o for k, i, o in convs) + fcs
    assert not any(isinstance(layer, TowerConv2D) for layer in one.layers)
    two = symbolic(kzoo.alexnet)
    for name in ("conv2", "conv4", "conv5"):
        layer = two.get_layer(name)
        assert isinstance(layer, TowerConv2D)
        assert [t.name for t in layer.towers] == [f"{name}_tower0", f"{name}_tower1"]
    no_lrn = symbolic(kzoo.alexnet, lrn=False)
    assert not [layer for layer in no_lrn.layers if layer.name.startswith("lrn")]
    assert [layer.name for layer in two.layers if layer.name.startswith("lrn")] == ["lrn1", "lrn2"]
    flat = symbolic(kzoo.alexnet, overlapping_pool=False)
    assert flat.get_layer("pool1").pool_size == (2, 2)
    assert [hw(flat, n)[0] for n in ("pool1", "pool2", "pool5")] == [27, 13, 6]


def test_layer_names_and_order(built):
    names = [layer.name for layer in built("alexnet").layers]
    order = ["conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2", "conv3", "conv4",
             "conv5", "pool5", "flatten", "fc6", "drop6", "fc7", "drop7", "fc8"]
    assert [n for n in names if n in order] == order
    res = built("resnet50")
    for name in ("conv1_conv", "pool1_pool", "conv2_block1_0_conv", "conv2_block1_3_bn",
                 "conv5_block3_out", "avg_pool", "fc"):
        res.get_layer(name)
    assert [layer.name for layer in built("overfeat_accurate").layers][-1] == "fc9"


def test_shortcut_options(built, symbolic):
    # B adds a 1x1 projection + BN where dimensions change; C everywhere; A none.
    assert trainable(symbolic(kzoo.resnet34, shortcut="A")) == SPEC_PARAMS["resnet34"] - PROJECTIONS_18_34
    identity_blocks = [(64, 2), (128, 1), (256, 1), (512, 1)]  # (width, blocks without projection in B)
    extra = sum(n * (w * w + 2 * w) for w, n in identity_blocks)
    assert trainable(symbolic(kzoo.resnet18, shortcut="C")) == SPEC_PARAMS["resnet18"] + extra
    assert trainable(symbolic(kzoo.resnet20, shortcut="B")) == SPEC_PARAMS["resnet20"] + 16 * 32 + 64 + 32 * 64 + 128
    adds = lambda m: sum(isinstance(layer, keras.layers.Add) for layer in m.layers)  # noqa: E731
    assert adds(built("resnet20")) == 9 and adds(built("plain20")) == 0
    assert adds(built("resnet50")) == 16 and adds(built("plain34")) == 0


def test_option_a_shortcut_is_zero_padded_identity():
    model = kzoo.resnet20()
    sub = keras.Model(model.get_layer("conv2_block3_out").output,
                      model.get_layer("conv3_block1_0_pad").output)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 16)).astype("float32")
    y = keras.ops.convert_to_numpy(sub(x))
    np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 16:], 0)


def test_zfnet_renormalizes_conv_filters_to_radius_0_1(symbolic):
    # ZFNet §3; the initial values of every model are test_paper_constants'.
    zf = symbolic(kzoo.zfnet)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        constraint = zf.get_layer(name).kernel_constraint
        assert isinstance(constraint, FilterRMSNorm) and constraint.radius == 0.1
    assert zf.get_layer("fc6").kernel_constraint is None
    assert symbolic(kzoo.zfnet, filter_radius=None).get_layer("conv1").kernel_constraint is None


def test_heads_pooling_and_input_tensor(symbolic):
    assert symbolic(kzoo.alexnet, include_top=False).output.shape == (None, 6, 6, 256)
    assert symbolic(kzoo.alexnet, include_top=False, pooling="avg").output.shape == (None, 256)
    assert symbolic(kzoo.resnet50, include_top=False).output.shape == (None, 7, 7, 2048)
    assert symbolic(kzoo.resnet18, include_top=False, pooling="max").output.shape == (None, 512)
    assert symbolic(kzoo.resnet18, include_top=False, input_shape=(None, None, 3)).output.shape == (
        None, None, None, 512)
    assert symbolic(kzoo.resnet20, classes=100).output.shape == (None, 100)
    tensor = keras.Input((96, 96, 3))
    model = symbolic(kzoo.resnet18, input_tensor=tensor, include_top=False)
    assert model.inputs[0] is tensor and model.output.shape == (None, 3, 3, 512)
    assert symbolic(kzoo.zfnet, name="mine").name == "mine"
    logits = symbolic(kzoo.resnet20, classifier_activation=None)
    probs = symbolic(kzoo.resnet20, classifier_activation="softmax")
    assert logits.get_layer("fc").activation is keras.activations.linear
    assert probs.get_layer("fc").activation is keras.activations.softmax


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate"])
def test_min_size_is_tight(name):
    size = get_entry(name).min_size
    assert kzoo.create_model(name, include_top=False, input_shape=(size, size, 3)).output.shape[1] >= 1
    with pytest.raises(ValueError, match="input_shape"):
        kzoo.create_model(name, input_shape=(size - 1, size - 1, 3))


def test_weights_from_a_file(tmp_path):
    model = kzoo.resnet20()
    path = tmp_path / "r20.weights.h5"
    model.save_weights(path)
    again = kzoo.resnet20(weights=str(path))
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: kzoo.create_model("resnet51"), ["resnet51", "resnet50"]),
        (lambda: kzoo.resnet50(weights="imagenet", classes=10), ["classes", "1000"]),
        (lambda: kzoo.resnet50(weights="no/such/file.h5"), ["weights", "no/such/file.h5"]),
        (lambda: kzoo.alexnet(weights="imagenet"), ["weights", "imagenet", "known for alexnet: none", "resnet50: imagenet"]),
        (lambda: kzoo.alexnet(input_shape=(63, 63, 3)), ["input_shape", "at least 64"]),
        (lambda: kzoo.resnet50(input_shape=(16, 16, 3)), ["input_shape", "at least 32"]),
        (lambda: kzoo.resnet50(input_shape=(224, 224, 4), weights="imagenet"), ["input_shape", "3 channels"]),
        (lambda: kzoo.resnet50(input_shape=(224, 224)), ["input_shape", "(height, width, channels)"]),
        (lambda: kzoo.alexnet(input_shape=(None, None, 3)), ["input_shape", "include_top=False"]),
        (lambda: kzoo.resnet18(shortcut="D"), ["shortcut", "'A', 'B', 'C'"]),
        (lambda: kzoo.resnet50(stride_placement="v2"), ["stride_placement", "'v1', 'v1.5'"]),
        (lambda: kzoo.alexnet(towers=3), ["towers", "2", "1"]),
        (lambda: kzoo.alexnet(lrn="yes"), ["lrn", "True or False"]),
        (lambda: kzoo.zfnet(activation="sigmoid"),
         ["zfnet: `activation` must be one of ('relu', 'tanh') (AlexNet §3.1, Fig. 1)", "got 'sigmoid'"]),
        (lambda: kzoo.overfeat_accurate(activation="ReLU"), ["overfeat_accurate: `activation`", "got 'ReLU'"]),
        (lambda: kzoo.resnet18(pooling="mean"), ["pooling", "'avg'", "'max'"]),
        (lambda: kzoo.resnet18(classes=0), ["classes", "positive integer"]),
        (lambda: kzoo.resnet18(classes=True), ["`classes` must be a positive integer; got True"]),
        (lambda: kzoo.alexnet(fc_units=True), ["`fc_units` must be a positive integer; got True"]),
        (lambda: kzoo.zfnet(conv_maps=(512, True, 512)), ["`conv_maps` must be 3 positive"]),
        (lambda: kzoo.resnet20(name=""), ["resnet20: `name` must be a non-empty string", "got ''"]),
        (lambda: kzoo.resnet20(name=7), ["`name` must be a non-empty string", "got 7"]),
        (lambda: kzoo.resnet18(classifier_activation="nope"), ["classifier_activation", "nope"]),
    ],
)
def test_bad_arguments_raise_value_error(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value)


def test_unknown_option_raises_type_error():
    with pytest.raises(TypeError, match="shortcut"):
        kzoo.alexnet(shortcut="B")


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate"])
def test_tanh_follows_every_conv_and_hidden_fc_under_the_relu_names(symbolic, name):
    """AlexNet Fig. 1's saturating net: each relu<i> layer is tanh of conv<i>/fc<i> (numpy's
    tanh), the classifier stays linear (numpy's matmul), and the whole net equals the ReLU
    net's graph and weights with its ReLU layers swapped for tanh (a second formulation)."""
    from kzoo.models.features import feature_extractor, stage_layers
    from kzoo.visualize.common import hidden_layer

    assert trainable(symbolic(kzoo.create_model, name, activation="tanh")) == SPEC_PARAMS[name]
    size = get_entry(name).min_size
    kw = dict(input_shape=(size, size, 3), classes=10, classifier_activation=None)
    model = kzoo.create_model(name, activation="tanh", **kw)
    relu = kzoo.create_model(name, **kw)
    assert [layer.name for layer in model.layers] == [layer.name for layer in relu.layers]
    acts = [layer.name for layer in model.layers if layer.name.startswith("relu")]
    names = {layer.name for layer in model.layers}
    before = {a: f"conv{a[4:]}" if f"conv{a[4:]}" in names else f"fc{a[4:]}" for a in acts}
    classifier = model.layers[-1].name
    x = np.random.default_rng(0).uniform(-128, 128, (2, size, size, 3)).astype("float32")  # mean-free pixels
    out = {k: keras.ops.convert_to_numpy(v) for k, v in
           feature_extractor(model, [*acts, *before.values(), classifier])(x).items()}
    for a in acts:
        np.testing.assert_allclose(out[a], np.tanh(out[before[a]]), rtol=1e-5, atol=1e-6, err_msg=a)
    assert np.abs(out[before[acts[0]]]).max() > 2  # saturating: tanh is far from the identity here
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer(classifier).weights)
    np.testing.assert_allclose(out[classifier], out[acts[-1]] @ kernel + bias, rtol=1e-4, atol=1e-5)
    # the ReLU net's graph and weights (its layers shared), its ReLU layers swapped for tanh
    model.set_weights(relu.get_weights())
    swapped = keras.models.clone_model(relu, clone_function=lambda layer: keras.layers.Activation(
        "tanh", name=layer.name) if isinstance(layer, keras.layers.ReLU) else layer)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(swapped(x)),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(keras.ops.convert_to_numpy(relu(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-3)
    # the addresses of the ReLU net: stage outputs, the last hidden layer
    assert stage_layers(model) == stage_layers(relu) == [a for a in acts if model.get_layer(a).output.ndim == 4]
    assert hidden_layer(model) == hidden_layer(relu) == acts[-1]


def _small(name):
    """The model with every layer but few weights: smallest input, 10 classes."""
    entry = get_entry(name)
    size = max(entry.min_size, 32)
    return kzoo.create_model(name, input_shape=(size, size, 3), classes=10)


# One model per family and custom layer (towers and LRN, filter renormalization and ceil
# padding, OverFeat, basic blocks with projections, option-A shortcuts, plain): the default
# tier. The other depths add no layer type; they and resnet1202 (40 s) are the large tier's.
SAVED_BY_DEFAULT = ("alexnet", "zfnet", "overfeat_fast", "resnet18", "resnet20", "plain20")


@pytest.mark.parametrize("name", [n if n in SAVED_BY_DEFAULT else pytest.param(n, marks=pytest.mark.large)
                                  for n in ISSUE_MODELS])
def test_keras_save_and_reload(tmp_path, name):
    with deep_graph_recursion():
        model = _small(name)
        x = np.random.default_rng(2).normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
        path = tmp_path / f"{name}.keras"
        model.save(path)
        again = keras.saving.load_model(path)
        # direct calls: predict() would trace a tf.function of each deep graph twice
        np.testing.assert_allclose(keras.ops.convert_to_numpy(again(x)), keras.ops.convert_to_numpy(model(x)),
                                   rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate",
                                  "resnet18", "resnet50", "resnet20", "plain20"])
def test_gradient_reaches_every_weight(name):
    import tensorflow as tf

    model = _small(name)
    x = tf.random.normal((4, *model.inputs[0].shape[1:]), seed=3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) * tf.range(10, dtype=tf.float32))
    grads = tape.gradient(loss, model.trainable_weights)
    dead = [w.path for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not dead
