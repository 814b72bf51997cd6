"""kzoo.layers, kzoo.models, the registry, the MAC counter and the feature extractor need
Keras only, not TensorFlow: under JAX (TensorFlow blocked) every family gives TensorFlow's
logits and features on the same saved weights."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import kzoo
from kzoo.registry import get_entry
from kzoo.utils import count_macs

# One model per family: the 2012-13 nets (towers and LRN, filter renormalization, OverFeat's
# two), ImageNet ResNets (basic and bottleneck blocks, projections), CIFAR ResNets (option A), plain.
FAMILIES = ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "resnet50", "resnet20", "plain20"]
FEATURES = "resnet20"  # kzoo.feature_extractor's stages, compared too

SCRIPT = r"""
import json, sys
sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
import numpy as np
import keras
import kzoo
from kzoo.utils import count_macs
from kzoo.models.common import shape_only

spec = json.load(open(sys.argv[1]))
out, macs = {}, {}
for name, path in spec["models"].items():
    x = np.load(path + ".npy")
    model = shape_only(kzoo.create_model, name, input_shape=x.shape[1:], classes=10, classifier_activation=None)
    model.load_weights(path + ".weights.h5")
    out[name] = keras.ops.convert_to_numpy(model(x, training=False))
    macs[name] = count_macs(model)
    if name == spec["features"]:
        for key, value in kzoo.feature_extractor(model)(x).items():
            out["features/" + key] = keras.ops.convert_to_numpy(value)
np.savez(spec["out"], **out)
tf_loaded = any(m == "tensorflow" or m.startswith("tensorflow.") for m, v in sys.modules.items() if v)
print("RESULT" + json.dumps({"backend": keras.backend.backend(), "tf_imported": tf_loaded, "macs": macs,
                             "params": kzoo.alexnet().count_params()}))
"""


def _informative_weights(model, rng):
    """He-scaled kernels, random biases and BN statistics: every layer shapes the output (the
    papers' N(0, 0.01) and bias-1 start gives the 2012-13 nets nearly input-independent logits,
    and fresh BN statistics, mean 0 and variance 1, nearly the identity)."""
    for w in model.weights:
        kind = w.path.split("/")[-1]
        if kind == "kernel":
            value = rng.normal(0, np.sqrt(2 / np.prod(w.shape[:-1])), w.shape)
        elif kind in ("bias", "beta", "moving_mean"):
            value = rng.normal(0, 0.1, w.shape)
        elif kind in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, w.shape)
        else:
            raise AssertionError(f"unexpected weight {w.path}")
        w.assign(value.astype("float32"))
    return model


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory, jax_env):
    """Each family built under TensorFlow at its smallest input with random weights, saved, and
    run again in one JAX subprocess with TensorFlow blocked: (TensorFlow's outputs, JAX's, report)."""
    folder = tmp_path_factory.mktemp("jax")
    rng = np.random.default_rng(0)
    expected, models = {}, {}
    for name in FAMILIES:
        size = get_entry(name).min_size
        model = _informative_weights(kzoo.create_model(name, input_shape=(size, size, 3), classes=10,
                                                           classifier_activation=None), rng)
        x = rng.normal(0, 50, (2, size, size, 3)).astype("float32")  # mean-free pixels
        path = str(folder / name)
        model.save_weights(path + ".weights.h5")
        np.save(path + ".npy", x)
        models[name] = path
        expected[name] = keras.ops.convert_to_numpy(model(x, training=False))
        expected["macs/" + name] = count_macs(model)
        if name == FEATURES:
            for key, value in kzoo.feature_extractor(model)(x).items():
                expected["features/" + key] = keras.ops.convert_to_numpy(value)
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"models": models, "features": FEATURES, "out": str(folder / "jax.npz")}))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(spec)], env=jax_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("RESULT", 1)[1])
    with np.load(folder / "jax.npz") as got:
        return expected, {k: got[k] for k in got.files}, report


def test_jax_runs_every_family_without_tensorflow(jax_run):
    expected, got, report = jax_run
    assert report["backend"] == "jax" and report["tf_imported"] is False
    assert report["params"] == 60_965_224  # AlexNet at 224 px, SPEC
    assert report["macs"] == {name: expected["macs/" + name] for name in FAMILIES}


@pytest.mark.parametrize("name", FAMILIES)
def test_jax_logits_equal_tensorflows_on_the_same_weights(jax_run, name):
    expected, got, _ = jax_run
    reference = expected[name]
    assert got[name].shape == reference.shape == (2, 10)
    assert np.abs(reference[0] - reference[1]).max() > 1e-3 * np.abs(reference).max()  # two different inputs
    np.testing.assert_allclose(got[name], reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_jax_features_equal_tensorflows(jax_run):
    expected, got, _ = jax_run
    keys = [k for k in expected if k.startswith("features/")]
    assert [k[len("features/"):] for k in keys] == ["conv1_relu", "conv2_block3_out", "conv3_block3_out",
                                                    "conv4_block3_out"]
    for key in keys:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5 * np.abs(expected[key]).max(),
                                   err_msg=key)


def test_blocking_tensorflow_really_blocks_it():
    # Guards the tests above: the blocker must make `import tensorflow` fail.
    code = 'import sys; sys.modules["tensorflow"] = None\ntry:\n import tensorflow\nexcept ImportError:\n print("blocked")'
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "blocked"
