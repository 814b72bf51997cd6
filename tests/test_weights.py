"""The weights registry and the converters: exact outputs, cached downloads, clear errors."""

import hashlib
import os

import h5py
import keras
import numpy as np
import pytest

import kzoo
from kzoo import weights as registry
from kzoo.weights.convert import keras_applications_resnet


def _randomized_resnet50(seed=0):
    """keras.applications ResNet50 with random conv biases and BN statistics, so that
    folding the biases into the BN is actually exercised."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(weights=None, classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model


@pytest.fixture(scope="module")
def resnet50_source():
    return _randomized_resnet50()


def _legacy_h5(model, path):
    """The keras.applications weights file format (Keras 2 HDF5, weights by layer)."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return str(path)


def test_keras_applications_resnet50_converts_exactly(resnet50_source, tmp_path):
    images = np.random.default_rng(1).normal(0, 50, (2, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(resnet50_source(images))
    for source in (resnet50_source, _legacy_h5(resnet50_source, tmp_path / "r50.h5")):
        converted = keras_applications_resnet(source, "resnet50", classifier_activation=None)
        got = keras.ops.convert_to_numpy(converted(images))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert converted.count_params() == resnet50_source.count_params() - sum(
        int(np.prod(layer.bias.shape)) for layer in resnet50_source.layers
        if isinstance(layer, keras.layers.Conv2D))  # the folded biases are gone


@pytest.fixture
def fake_imagenet(resnet50_source, tmp_path, monkeypatch):
    """The manifest's resnet50 'imagenet' entry pointed at a local file:// copy."""
    os.makedirs(tmp_path / "src", exist_ok=True)
    path = _legacy_h5(resnet50_source, tmp_path / "src" / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    md5 = hashlib.md5(open(path, "rb").read()).hexdigest()
    entries = {m: dict(v) for m, v in registry.manifest().items()}
    entries["resnet50"] = {"imagenet": {**entries["resnet50"]["imagenet"], "url": "file://" + path,
                                        "file_hash": md5}}
    monkeypatch.setattr(registry, "manifest", lambda: entries)
    monkeypatch.setenv("KZOO_CACHE_DIR", str(tmp_path / "cache"))
    return path, entries


def test_weights_imagenet_downloads_converts_and_caches(fake_imagenet, resnet50_source, tmp_path):
    path, _ = fake_imagenet
    images = np.random.default_rng(2).normal(0, 50, (1, 224, 224, 3)).astype("float32")
    model = kzoo.resnet50(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(model(images), resnet50_source(images), rtol=1e-4, atol=1e-3)
    cached = tmp_path / "cache" / "kzoo" / "resnet50-imagenet.weights.h5"
    assert cached.exists() and not [p for p in cached.parent.iterdir() if p.name.startswith(".tmp")]
    os.remove(path)  # the converted file is reused: no second download
    again = kzoo.resnet50(weights="imagenet", classifier_activation=None)
    np.testing.assert_array_equal(again(images), model(images))
    headless = kzoo.resnet50(weights="imagenet", include_top=False, pooling="avg")
    features = keras.Model(model.input, model.get_layer("avg_pool").output)(images)
    np.testing.assert_allclose(headless(images), features, rtol=1e-6, atol=1e-6)


def test_a_corrupt_download_is_removed_and_named(fake_imagenet, tmp_path):
    path, entries = fake_imagenet
    entries["resnet50"]["imagenet"]["file_hash"] = "0" * 32
    with pytest.raises(ValueError, match="truncated or corrupt.*removed"):
        kzoo.resnet50(weights="imagenet")
    downloads = tmp_path / "cache" / "kzoo" / "downloads"
    assert not list(downloads.iterdir())  # nothing half-written stays
    assert not (tmp_path / "cache" / "kzoo" / "resnet50-imagenet.weights.h5").exists()


def test_unknown_names_and_wrong_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no weights named 'imagenet'.*registered: .*resnet50: imagenet"):
        kzoo.resnet18(weights="imagenet")
    with pytest.raises(ValueError, match="neither a registered weights name"):
        kzoo.resnet50(weights="nonsense")
    kzoo.resnet20().save_weights(str(tmp_path / "r20.weights.h5"))
    with pytest.raises(ValueError, match=r"does not fit 'resnet32'.*has no array of that shape|does not fit"):
        kzoo.resnet32(weights=str(tmp_path / "r20.weights.h5"))
    (tmp_path / "bad.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="not a readable .weights.h5 file"):
        kzoo.resnet20(weights=str(tmp_path / "bad.weights.h5"))


def test_manifest_entries_are_complete_and_point_at_registered_models():
    for model, entries in registry.manifest().items():
        assert model in kzoo.list_models()
        for name, item in entries.items():
            assert item["preprocessing"] and item["metrics"] and item["measured"]
            if "url" in item:
                assert item["converter"] in __import__("kzoo.weights.convert", fromlist=["x"]).CONVERTERS


def test_kzoo_trained_digits_weights_reproduce_their_measured_error():
    import tensorflow as tf

    from kzoo.data.sources import builtin_digits
    from kzoo.data.transforms import eval_map
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import recipe_preprocess

    item = registry.entry("resnet20", "digits")
    model = kzoo.resnet20(weights="digits")
    preprocess = recipe_preprocess(resnet_cifar.RECIPE, "resnet20", demo=True)
    stats = {"mean": registry.mean("resnet20", "digits")}
    val = builtin_digits().val.map(eval_map(preprocess, stats)).batch(128)
    wrong = total = 0
    for images, labels in val:
        wrong += int(tf.reduce_sum(tf.cast(tf.argmax(model(images), 1) != tf.cast(labels, tf.int64), tf.int32)))
        total += len(labels)
    assert total == 359
    assert abs(100 * wrong / total - item["metrics"]["top1_err"]) <= 100 / 359  # within one image
