"""The papers' training constants and initialisations, written here as SPEC states them.

Every expected number below is a literal from SPEC.md (and the paper section it
cites), never read back from the code under test.
"""

import csv
import math

import keras
import numpy as np
import pytest

import kzoo
from kzoo.layers import LocalResponseNormalization
from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet

CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)


# --- the recipes' hyperparameters -------------------------------------------------------

@pytest.mark.parametrize("recipe, batch, momentum, decay, epochs", [
    (alexnet.RECIPE, 128, 0.9, 5e-4, 90),  # AlexNet §5: ~90 cycles
    (zfnet.RECIPE, 128, 0.9, 0.0, 70),  # ZFNet §3 states no weight decay; stopped after 70 epochs
    (overfeat.RECIPE, 128, 0.6, 1e-5, None),  # OverFeat §3.1 (epochs not stated)
    (resnet.RECIPE, 256, 0.9, 1e-4, None),  # ResNet §3.4 (60e4 iterations, not epochs)
    (resnet_cifar.RECIPE, 128, 0.9, 1e-4, None),  # ResNet §4.2 (64k iterations)
])
def test_recipe_batch_momentum_decay_epochs(recipe, batch, momentum, decay, epochs):
    assert recipe.batch_size == batch
    assert recipe.momentum == momentum
    assert recipe.weight_decay == decay
    assert recipe.decay_biases  # AlexNet's rule decays every w; no paper exempts biases
    if epochs is not None:
        assert recipe.epochs == epochs


def _plateau_lrs(schedule, errors):
    """The lr of each epoch while the validation error follows `errors`."""
    lrs = []
    for epoch, err in enumerate(errors):
        lrs.append(schedule.lr(0, epoch))
        schedule.on_epoch_end(epoch, err)
    return lrs


def test_alexnet_lr_0_01_divided_by_10_three_times_on_plateau():
    improving = _plateau_lrs(alexnet.RECIPE.schedule("alexnet"), np.linspace(0.9, 0.3, 90))
    assert set(improving) == {0.01}
    flat = _plateau_lrs(alexnet.RECIPE.schedule("alexnet"), [0.5] * 90)
    steps = sorted(set(flat), reverse=True)
    assert steps == pytest.approx([0.01, 0.001, 1e-4, 1e-5], rel=1e-12)  # three times, then no more
    assert flat == sorted(flat, reverse=True) and flat[-1] == pytest.approx(1e-5, rel=1e-12)


@pytest.mark.parametrize("recipe, model, initial", [
    (zfnet.RECIPE, "zfnet", 0.01),  # ZFNet §3: annealed by hand on plateau, no count
    (resnet.RECIPE, "resnet50", 0.1),  # ResNet §3.4: /10 when the error plateaus
])
def test_lr_divided_by_10_on_every_plateau(recipe, model, initial):
    assert set(_plateau_lrs(recipe.schedule(model), np.linspace(0.9, 0.3, 60))) == {initial}
    steps = sorted(set(_plateau_lrs(recipe.schedule(model), [0.5] * 60)), reverse=True)
    assert len(steps) >= 5  # not capped at three
    assert steps == pytest.approx([initial * 0.1**i for i in range(len(steps))], rel=1e-12)


def test_resnet_imagenet_stops_at_600k_iterations():
    schedule = resnet.RECIPE.schedule("resnet50")
    assert not schedule.stop(599_999, 0) and schedule.stop(600_000, 0)


def test_overfeat_lr_0_05_halved_at_epochs_30_50_60_70_80():
    schedule = overfeat.RECIPE.schedule("overfeat_fast")
    at = {epoch: schedule.lr(10**9, epoch) for epoch in (0, 29, 30, 49, 50, 59, 60, 69, 70, 79, 80, 89)}
    assert at == pytest.approx({0: 0.05, 29: 0.05, 30: 0.025, 49: 0.025, 50: 0.0125, 59: 0.0125,
                                60: 0.00625, 69: 0.00625, 70: 0.003125, 79: 0.003125,
                                80: 0.0015625, 89: 0.0015625}, rel=1e-12)


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_lr_0_1_divided_at_32k_48k_stop_at_64k(depth):
    schedule = resnet_cifar.RECIPE.schedule(f"resnet{depth}")
    if depth >= 110:  # §4.2: warm-up (1202 is "trained as above"); leave it as a real run would
        for step in range(400):
            schedule.on_step_end(step, 0.5)
    at = {step: schedule.lr(step, 10**6) for step in (400, 31_999, 32_000, 47_999, 48_000, 63_999)}
    assert at == pytest.approx({400: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001,
                                63_999: 0.001}, rel=1e-12)
    assert not schedule.stop(63_999, 0) and schedule.stop(64_000, 0)


@pytest.mark.parametrize("depth", (20, 56))
def test_shallower_cifar_nets_start_at_0_1(depth):
    schedule = resnet_cifar.RECIPE.schedule(f"resnet{depth}")
    for step in range(100):
        assert schedule.lr(step, 0) == 0.1
        schedule.on_step_end(step, 0.9)


def test_resnet110_warms_up_at_0_01_until_train_error_below_80_percent():
    schedule = resnet_cifar.RECIPE.schedule("resnet110")
    step = 0
    for step in range(1000):  # error stays at 85%: still warming up
        assert schedule.lr(step, 0) == 0.01
        schedule.on_step_end(step, 0.85)
    for step in range(1000, 1400):  # then about 400 iterations below 80% (§4.2's "about 400")
        schedule.on_step_end(step, 0.75)
    assert schedule.lr(1400, 0) == 0.1
    assert schedule.lr(32_000, 0) == pytest.approx(0.01, rel=1e-12)  # then the usual schedule


# --- the built models: LRN, dropout, initialisation ---------------------------------------

def _source_layer(layer):
    """The layer that feeds `layer` (the graphs are chains)."""
    return layer.input._keras_history.operation.name


@pytest.mark.parametrize("name, chain", [
    # AlexNet §3.3: LRN after the ReLU of conv1 and conv2; pooling follows it (§3.4)
    ("alexnet", {"relu1": "conv1", "lrn1": "relu1", "pool1": "lrn1",
                 "relu2": "conv2", "lrn2": "relu2", "pool2": "lrn2"}),
    # ZFNet Fig. 3: ReLU, max-pool, then contrast normalisation (ceil pooling pads first)
    ("zfnet", {"relu1": "conv1", "pool1_pad": "relu1", "pool1": "pool1_pad", "lrn1": "pool1",
               "relu2": "conv2", "pool2_pad": "relu2", "pool2": "pool2_pad", "lrn2": "pool2"}),
])
def test_lrn_constants_and_place(built, name, chain):
    model = built(name)
    lrns = [layer for layer in model.layers if isinstance(layer, LocalResponseNormalization)]
    assert [layer.name for layer in lrns] == ["lrn1", "lrn2"]
    for layer in lrns:  # §3.3: k=2, n=5, alpha=1e-4, beta=0.75, alpha as printed (not divided by n)
        assert (layer.k, layer.n, layer.alpha, layer.beta) == (2.0, 5, 1e-4, 0.75)
        assert layer.effective_alpha == 1e-4
    for layer, source in chain.items():
        assert _source_layer(model.get_layer(layer)) == source, layer


# Dropout 0.5 after the ReLU of exactly these layers; none in any other model (ResNet §3.4: no dropout).
DROPOUT_AFTER = {"alexnet": ("fc6", "fc7"), "zfnet": ("fc6", "fc7"),
                 "overfeat_fast": ("fc6", "fc7"), "overfeat_accurate": ("fc7", "fc8")}


@pytest.mark.parametrize("name", kzoo.list_models())
def test_dropout_only_where_the_papers_put_it(built, name):
    model = built(name)
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    expected = DROPOUT_AFTER.get(name, ())
    assert len(drops) == len(expected)
    for layer, fc in zip(drops, expected):
        assert layer.rate == 0.5
        relu = model.get_layer(_source_layer(layer))
        assert isinstance(relu, keras.layers.ReLU) and _source_layer(relu) == fc
    if name not in ("alexnet", "zfnet"):  # OverFeat: "no LRN"; ResNets: BN instead
        assert not any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)


def _kernels_and_biases(model):
    """{layer path: array} of every kernel and bias (towers' separately)."""
    kernels, biases = {}, {}
    for w in model.weights:
        *path, kind = w.path.split("/")
        if kind in ("kernel", "bias"):
            (kernels if kind == "kernel" else biases)["/".join(path)] = np.asarray(w)
    return kernels, biases


def _sample(values, at_most=2**20):
    flat = values.reshape(-1)
    return flat[:: max(1, flat.size // at_most)]


def _assert_gaussian(values, std, where):
    """values ~ N(0, std^2). The sample std of n draws has standard error std/sqrt(2n), the
    mean std/sqrt(n): 6 standard errors give a false alarm about once in 1e9 layers."""
    x = _sample(values).astype(np.float64)
    n = x.size
    assert abs(x.mean()) < 6 * std / math.sqrt(n), where
    assert x.std() == pytest.approx(std, rel=6 / math.sqrt(2 * n)), where


def _assert_normal_tails(z, where):
    """Pooled z-scores: 4.55% beyond 2 sigma (a uniform or 2-sigma truncated init has none)."""
    tail = np.mean(np.abs(z) > 2)
    assert tail == pytest.approx(0.0455, abs=6 * math.sqrt(0.0455 * 0.9545 / z.size)), where


def _assert_independent(kernels):
    """No kernel starts as a copy (or a prefix) of another: the correlation of their first n
    values is within 6/sqrt(n) of 0 (its standard error for independent draws)."""
    names = list(kernels)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = min(kernels[a].size, kernels[b].size, 4096)
            r = np.corrcoef(kernels[a].reshape(-1)[:n], kernels[b].reshape(-1)[:n])[0, 1]
            assert abs(r) < 6 / math.sqrt(n), (a, b, r)


# AlexNet §5: biases 1 in conv2, conv4, conv5, fc6, fc7; 0 elsewhere. ZFNet §3: biases 0.
ONE_BIASES = {"alexnet": ("conv2", "conv4", "conv5", "fc6", "fc7"), "zfnet": ()}


@pytest.mark.parametrize("name, kernels", [
    ("alexnet", 8 + 3), ("zfnet", 8), ("overfeat_fast", 8), ("overfeat_accurate", 9),  # (+ towers)
])
def test_weights_start_gaussian_with_std_0_01(name, kernels):
    # AlexNet §5 and ZFNet §3: N(0, 0.01) (1e-2); OverFeat §3.1: (mu, sigma) = (0, 1e-2)
    size = kzoo.registry.get_entry(name).min_size  # the init does not depend on the input size; memory does
    found, biases = _kernels_and_biases(kzoo.create_model(name, input_shape=(size, size, 3)))
    assert len(found) == kernels
    for path, values in found.items():
        _assert_gaussian(values, 0.01, path)
    _assert_normal_tails(np.concatenate([_sample(v) for v in found.values()]) / 0.01, name)
    _assert_independent(found)
    if name in ONE_BIASES:
        for path, values in biases.items():
            expected = 1.0 if path.split("/")[0] in ONE_BIASES[name] else 0.0
            assert np.all(values == expected), path


def test_alexnets_glorot_start_is_glorots_uniform_with_zero_biases():
    # init="glorot" (not the paper's: Keras' own start, for a plain model.fit; the learning run is
    # in the large tier): U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), over
    # each kernel as stored (towers apart); every bias 0.
    size = kzoo.registry.get_entry("alexnet").min_size
    kernels, biases = _kernels_and_biases(kzoo.alexnet(input_shape=(size, size, 3), init="glorot"))
    assert len(kernels) == 8 + 3 and len(biases) == len(kernels)
    for path, values in kernels.items():
        *window, fan_in, fan_out = values.shape
        area = math.prod(window)
        limit = math.sqrt(6 / (area * fan_in + area * fan_out))
        x = _sample(values).astype(np.float64)
        assert np.abs(x).max() <= limit * (1 + 1e-6), path  # float32 draws: the bound to its rounding
        assert x.std() == pytest.approx(limit / math.sqrt(3), rel=6 / math.sqrt(x.size)), path  # a uniform's std
        assert np.mean(np.abs(x) > limit / 2) == pytest.approx(0.5, abs=6 / math.sqrt(x.size)), path  # flat, not normal
    for path, values in biases.items():
        assert np.all(values == 0), path


@pytest.mark.parametrize("name", ["resnet50", "resnet20"])
def test_resnet_convs_start_with_he_init(name):
    # §3.4 / §4.2 "initialize the weights as in [12]" (He et al. 2015): N(0, 2 / n),
    # n = k*k*c input connections of a unit. Convs carry no bias (BN follows).
    model = kzoo.create_model(name)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == {"resnet50": 53, "resnet20": 19}[name]  # 49 + 4 projections; 6n+1 (option A)
    _assert_independent({layer.name: np.asarray(layer.kernel) for layer in convs})
    pooled = []
    for layer in convs:
        assert not layer.use_bias, layer.name
        kernel = np.asarray(layer.kernel)
        kh, kw, c, _ = kernel.shape
        std = math.sqrt(2 / (kh * kw * c))
        _assert_gaussian(kernel, std, layer.name)
        pooled.append(_sample(kernel) / std)
    _assert_normal_tails(np.concatenate(pooled), name)


# --- the update rule and the lr scaling ----------------------------------------------------

def test_coupled_l2_momentum_update_matches_alexnet_rule_over_two_steps():
    """AlexNet §5: v <- 0.9 v - 0.0005 lr w - lr dL/dw, w <- w + v, computed here in numpy."""
    import tensorflow as tf

    from kzoo.train.engine import make_steps

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 2, 1, 2, 0], np.int32)
    w0, b0 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    lr, momentum, decay = 0.01, 0.9, 0.0005

    def engine_steps(momentum, decay):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.set_weights([w0, b0])
        optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
        optimizer.build(model.trainable_variables)
        train_step, _ = make_steps(model, optimizer, tf.distribute.get_strategy(), global_batch=5, classes=3,
                                   weight_decay=decay)
        for _ in range(2):
            train_step((tf.constant(x), tf.constant(labels)))
        return model.get_weights()

    def grads(w, b):  # mean softmax cross-entropy: dL/dlogits = (softmax - onehot) / batch
        logits = x.astype(np.float64) @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d = (p - np.eye(3)[labels]) / len(x)
        return x.T @ d, d.sum(0)

    def paper_steps(momentum, decay):
        w, b = w0.astype(np.float64), b0.astype(np.float64)
        vw, vb = np.zeros_like(w), np.zeros_like(b)
        for _ in range(2):
            gw, gb = grads(w, b)
            vw, vb = momentum * vw - decay * lr * w - lr * gw, momentum * vb - decay * lr * b - lr * gb
            w, b = w + vw, b + vb
        return w, b

    tolerance = dict(rtol=1e-6, atol=1e-7)  # float32 rounding of values ~1
    runs = {}
    for m, d in ((momentum, decay), (momentum, 0.0), (0.0, decay)):  # the rule; without decay; without momentum
        runs[m, d] = engine_steps(m, d)
        w, b = paper_steps(m, d)
        np.testing.assert_allclose(runs[m, d][0], w, **tolerance, err_msg=f"momentum {m}, decay {d}")
        np.testing.assert_allclose(runs[m, d][1], b, **tolerance, err_msg=f"momentum {m}, decay {d}")
    # the decay and the momentum each move the engine's weights far beyond the tolerance
    full = runs[momentum, decay][0]
    assert np.abs(runs[momentum, 0.0][0] - full).max() > 100 * tolerance["atol"]
    assert np.abs(runs[0.0, decay][0] - full).max() > 1e-5  # the second step carries 0.9 v


def test_lr_scales_with_batch_over_paper_batch_and_schedules_count_paper_iterations(tmp_path):
    # Batch 32 against a paper batch of 128: lr x 0.25, and 4 of our steps are one paper iteration.
    from kzoo.data.sources import builtin_digits
    from kzoo.preprocessing import Preprocess
    from kzoo.train.engine import TrainConfig, train
    from kzoo.train.schedules import StepsAt

    def tiny(classes):
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Flatten()(inputs)))

    config = TrainConfig(model="custom", schedule=StepsAt(0.1, (2,), 0.1, unit="step"),
                         preprocess=Preprocess(resize=8, center=8, crop=8), run_dir=str(tmp_path / "run"),
                         batch_size=32, paper_batch=128, epochs=3, momentum=0.9, weight_decay=0.0,
                         steps_per_epoch=4, val_steps=1, verbose=0)
    metrics, _ = train(config, builtin_digits(), model_fn=tiny)
    with open(tmp_path / "run" / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # each epoch's last step (0-based 3, 7, 11) is paper iteration 0.75, 1.75, 2.75: the
    # boundary at paper iteration 2 falls in the third epoch
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.025, 0.025, 0.0025], rel=1e-9)
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    assert metrics["lr"] == pytest.approx(0.0025, rel=1e-9)
