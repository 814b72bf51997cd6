"""The weights registry and the converters: exact outputs, cached downloads, clear errors."""

import hashlib
import os
import re
import warnings

import keras
import numpy as np
import pytest

import kzoo
from kzoo import inference as load
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
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return str(path)


def test_keras_applications_resnet50_converts_exactly(resnet50_source, tmp_path):
    images = np.random.default_rng(1).normal(0, 50, (2, 224, 224, 3)).astype("float32")  # RGB for kzoo
    expected = keras.ops.convert_to_numpy(resnet50_source(images[..., ::-1]))  # keras.applications: BGR
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
    np.testing.assert_allclose(model(images), resnet50_source(images[..., ::-1]), rtol=1e-4, atol=1e-3)
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"does not fit 'resnet32': it holds 97 arrays, the model has 157; the "
                                             r"model's conv2_block4_1_conv/kernel \(3, 3, 16, 16\) has no array of "
                                             r"that shape in the file\."):
            kzoo.resnet32(weights=str(tmp_path / "r20.weights.h5"))
    # Keras' ~50 "will retain their freshly-initialized weights" warnings become that one error
    assert not [w for w in caught if "freshly-initialized" in str(w.message)]
    (tmp_path / "bad.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="not a readable .weights.h5 file"):
        kzoo.resnet20(weights=str(tmp_path / "bad.weights.h5"))


def test_manifest_entries_are_complete_and_point_at_registered_models():
    for model, entries in registry.manifest().items():
        assert model in kzoo.list_models()
        for name, item in entries.items():
            assert item["preprocess"] and item["class_names"] and item["metrics"] and item["measured"]
            entry = __import__("kzoo.registry", fromlist=["x"]).get_entry(model)
            assert load.registered_preprocess(model, name).crop == entry.default_size  # the record the weights take
            assert len(load.registered_class_names(model, name)) == {"imagenet": 1000, "digits": 10}[name]
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
    bf16 = kzoo.resnet20(weights="digits", dtype="mixed_bfloat16")
    preprocess = recipe_preprocess(resnet_cifar.RECIPE, "resnet20", demo=True)
    stats = {"mean": registry.mean("resnet20", "digits")}
    val = builtin_digits().val.map(eval_map(preprocess, stats)).batch(128)
    wrong = total = agree = 0
    for images, labels in val:
        guess = tf.argmax(model(images), 1)
        wrong += int(tf.reduce_sum(tf.cast(guess != tf.cast(labels, tf.int64), tf.int32)))
        agree += int(tf.reduce_sum(tf.cast(guess == tf.argmax(bf16.predict_on_batch(images), 1), tf.int32)))  # folded BN
        total += len(labels)
    assert total == 359
    assert abs(100 * wrong / total - item["metrics"]["top1_err"]) <= 100 / 359  # within one image
    # bfloat16 keeps 8 significant bits: the same weights name the same digit for >= 99% of them
    assert agree >= 0.99 * total, agree


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):  # length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _caffe_blob(array):
    legacy = (1,) * (4 - array.ndim) + array.shape  # num, channels, height, width, as bvlc_alexnet stores them
    head = b"".join(_varint(n << 3) + _varint(d) for n, d in zip((1, 2, 3, 4), legacy))
    return head + _field(5, np.ascontiguousarray(array, "<f4").tobytes())


def _write_caffemodel(path, blobs):
    """A V1 NetParameter (`layers`, as bvlc_alexnet.caffemodel), written byte by byte."""
    net = _field(1, b"AlexNet")
    for name, arrays in blobs.items():
        layer = _field(4, name.encode()) + b"".join(_field(6, _caffe_blob(a)) for a in arrays)
        net += _field(2, layer)
    path.write_bytes(net)


def _caffe_alexnet_blobs(rng, fc=64, classes=10):
    shapes = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
              "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (fc, 9216), "fc7": (fc, fc),
              "fc8": (classes, fc)}
    return {n: [rng.normal(0, (2 / np.prod(s[1:])) ** 0.5, s).astype("float32"),
                rng.normal(0, 0.1, (s[0],)).astype("float32")] for n, s in shapes.items()}


def _caffe_reference(blobs, x):
    """Caffe's AlexNet forward in tf.nn ops: NCHW flattening, groups, Caffe LRN."""
    import tensorflow as tf

    def conv(x, name, stride=1, pad=0, groups=1):
        k = blobs[name][0].transpose(2, 3, 1, 0)
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        xs, ks = tf.split(x, groups, axis=3), tf.split(k, groups, axis=3)
        y = tf.concat([tf.nn.conv2d(a, b, stride, "VALID") for a, b in zip(xs, ks)], axis=3)
        return tf.nn.relu(y + blobs[name][1])

    def lrn(x):
        return tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75)

    def pool(x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    x = pool(lrn(conv(x, "conv1", stride=4)))
    x = pool(lrn(conv(x, "conv2", pad=2, groups=2)))
    x = conv(conv(x, "conv3", pad=1), "conv4", pad=1, groups=2)
    x = pool(conv(x, "conv5", pad=1, groups=2))
    x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [x.shape[0], -1])  # Caffe flattens (C, H, W)
    x = tf.nn.relu(x @ blobs["fc6"][0].T + blobs["fc6"][1])
    x = tf.nn.relu(x @ blobs["fc7"][0].T + blobs["fc7"][1])
    return (x @ blobs["fc8"][0].T + blobs["fc8"][1]).numpy()


def test_caffe_alexnet_converts_exactly_without_caffe(tmp_path):
    from kzoo.weights.caffe import read_caffemodel
    from kzoo.weights.convert import caffe_alexnet

    blobs = _caffe_alexnet_blobs(np.random.default_rng(3))
    _write_caffemodel(tmp_path / "net.caffemodel", blobs)
    read = read_caffemodel(str(tmp_path / "net.caffemodel"))
    assert list(read) == list(blobs) and all(np.array_equal(read[n][0].reshape(blobs[n][0].shape), blobs[n][0])
                                             for n in blobs)
    model = caffe_alexnet(str(tmp_path / "net.caffemodel"), classifier_activation=None)
    assert [t.name for t in model.get_layer("conv2").towers] == ["conv2_tower0", "conv2_tower1"]
    bgr = np.random.default_rng(4).normal(0, 50, (2, 227, 227, 3)).astype("float32")
    expected = _caffe_reference(blobs, bgr)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(bgr)), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())


def test_bad_caffemodels_are_named(tmp_path):
    from kzoo.weights.caffe import read_caffemodel
    from kzoo.weights.convert import caffe_alexnet

    blobs = _caffe_alexnet_blobs(np.random.default_rng(5))
    _write_caffemodel(tmp_path / "net.caffemodel", blobs)
    data = (tmp_path / "net.caffemodel").read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.caffemodel' is corrupt, truncated or not a caffemodel: the field after "
                                         r"layer 'conv3': field 2 at byte 4910220 declares 2655786 bytes, only "
                                         r"947504 remain\."):
        read_caffemodel(str(tmp_path / "cut.caffemodel"))
    del blobs["conv3"]
    _write_caffemodel(tmp_path / "other.caffemodel", blobs)
    with pytest.raises(ValueError, match=r"no layers \['conv3'\]"):
        caffe_alexnet(str(tmp_path / "other.caffemodel"))


def _write_pth(path, state, monkeypatch, layout=None, pid=None, data=None, storage="FloatStorage"):
    """torch.save's zip format, written without PyTorch: a pickle whose tensors are
    torch._utils._rebuild_tensor_v2 calls on persistent storages. `layout` {name:
    (offset, size, stride)}, `pid` {name: f(storage class, key, numel) -> persistent id}
    and `data` {name: storage bytes} replace a tensor's own, to craft broken files."""
    import collections
    import io
    import pickle
    import sys
    import types
    import zipfile

    layout, pid, data = layout or {}, pid or {}, data or {}
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_cls = type(storage, (), {"__module__": "torch"})
    setattr(torch_mod, storage, storage_cls)

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled here")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Storage:
        def __init__(self, name, key, array):
            self.name, self.key, self.array = name, key, array

    class Tensor:
        def __init__(self, name, key, array):
            self.storage, self.shape = Storage(name, key, array), array.shape

        def __reduce__(self):
            strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
            offset, size, stride = layout.get(self.storage.name, (0, self.shape, strides))
            return _rebuild_tensor_v2, (self.storage, offset, size, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                make = pid.get(obj.name, lambda cls, key, n: ("storage", cls, key, "cpu", n))
                return make(storage_cls, obj.key, obj.array.size)
            return None

    tensors = collections.OrderedDict((k, Tensor(k, str(i), np.ascontiguousarray(v, "<f4")))
                                      for i, (k, v) in enumerate(state.items()))
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(tensors)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "3\n")
        for name, t in tensors.items():
            z.writestr(f"archive/data/{t.storage.key}", data.get(name, t.storage.array.tobytes()))


def _torchvision_state(model, blocks):
    """kzoo resnet18-style weights under torchvision's names, written out by hand."""
    state = {}

    def conv(kzoo_name, tv):
        state[f"{tv}.weight"] = model.get_layer(kzoo_name).get_weights()[0].transpose(3, 2, 0, 1)

    def bn(kzoo_name, tv):
        g, b, m, v = model.get_layer(kzoo_name).get_weights()
        state.update({f"{tv}.weight": g, f"{tv}.bias": b, f"{tv}.running_mean": m, f"{tv}.running_var": v})

    conv("conv1_conv", "conv1")
    bn("conv1_bn", "bn1")
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            k, t = f"conv{stage + 1}_block{block + 1}", f"layer{stage}.{block}"
            for i in (1, 2):
                conv(f"{k}_{i}_conv", f"{t}.conv{i}")
                bn(f"{k}_{i}_bn", f"{t}.bn{i}")
            if f"{k}_0_conv" in {layer.name for layer in model.layers}:
                conv(f"{k}_0_conv", f"{t}.downsample.0")
                bn(f"{k}_0_bn", f"{t}.downsample.1")
    w, b = model.get_layer("fc").get_weights()
    state.update({"fc.weight": w.T, "fc.bias": b})
    return state


def test_torchvision_state_dicts_convert_without_torch(tmp_path, monkeypatch):
    from kzoo.weights.convert import torchvision_resnet

    keras.utils.set_random_seed(6)
    source = kzoo.resnet18(classifier_activation=None)
    rng = np.random.default_rng(6)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, layer.gamma.shape), rng.normal(0, 0.1, layer.beta.shape),
                               rng.normal(0, 0.1, layer.gamma.shape), rng.uniform(0.5, 2, layer.gamma.shape)])
    state = _torchvision_state(source, (2, 2, 2, 2))
    assert len(state) == 102  # torchvision resnet18: 62 conv/bn/fc tensors + running stats (no counters)
    _write_pth(tmp_path / "resnet18.pth", state, monkeypatch)
    monkeypatch.undo()  # the reader needs no torch module at all
    converted = torchvision_resnet(str(tmp_path / "resnet18.pth"), "resnet18", classifier_activation=None)
    images = rng.normal(0, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(converted(images), source(images), rtol=1e-5, atol=1e-5)
    del state["layer4.1.bn2.running_var"]
    _write_pth(tmp_path / "cut.pth", state, monkeypatch)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no 'layer4.1.bn2.running_var'"):
        torchvision_resnet(str(tmp_path / "cut.pth"), "resnet18")
    with pytest.raises(ValueError, match="not a zip-format torch file"):
        torchvision_resnet(__file__, "resnet18")


TORCH_SIDE = """
import sys, numpy as np, torch, torchvision
name, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
tv = getattr(torchvision.models, name)(weights=None).eval()
with torch.no_grad():
    for module in tv.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    torch.save(tv.state_dict(), out + ".pth")
    images = np.random.default_rng(7).normal(0, 1, (2, 224, 224, 3)).astype("float32")
    expected = tv(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
np.savez(out + ".npz", images=images, expected=expected)
"""


def test_torchvision_resnet_matches_torch_itself(tmp_path):
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        pytest.skip("torch and torchvision are not installed (optional: the reader itself needs neither)")
    from kzoo.weights.convert import torchvision_resnet

    for name in ("resnet18", "resnet50"):
        out = str(tmp_path / name)
        # torch runs in its own process: its CUDA libraries and TensorFlow's need not share one
        subprocess.run([sys.executable, "-c", TORCH_SIDE, name, out], check=True, timeout=600)
        ref = np.load(out + ".npz")
        converted = torchvision_resnet(out + ".pth", name, classifier_activation=None)
        got = keras.ops.convert_to_numpy(converted(ref["images"]))
        np.testing.assert_allclose(got, ref["expected"], rtol=1e-4, atol=1e-4 * np.abs(ref["expected"]).max())


def test_convert_command_writes_a_loadable_file(tmp_path, capsys):
    from kzoo.weights.__main__ import main

    blobs = _caffe_alexnet_blobs(np.random.default_rng(8))
    _write_caffemodel(tmp_path / "net.caffemodel", blobs)
    out = tmp_path / "alexnet-caffe.weights.h5"
    assert main(["convert", "caffe", "alexnet", str(tmp_path / "net.caffemodel"), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = kzoo.alexnet(input_shape=(227, 227, 3), classes=10, fc_units=64, lrn_convention="caffe",
                         weights=str(out), classifier_activation=None)
    bgr = np.random.default_rng(9).normal(0, 50, (1, 227, 227, 3)).astype("float32")
    expected = _caffe_reference(blobs, bgr)
    np.testing.assert_allclose(model(bgr), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    import h5py

    with h5py.File(out, "r") as f:  # the architecture record kzoo writes
        assert f.attrs["kzoo_model"] == "alexnet" and len(f.attrs["kzoo_layers"]) == len(model.layers) - 1  # no input
    assert main(["list"]) == 0 and "resnet20     digits" in capsys.readouterr().out
    source = str(tmp_path / "net.caffemodel")
    stale = tmp_path / "stale.weights.h5"
    stale.write_bytes(b"a user's file")
    assert _convert_error(capsys, ["convert", "caffe", "alexnet", source, str(stale)]) == (
        f"error: OUT {str(stale)!r} already exists; pass --overwrite to replace it, or choose another path.\n")
    assert stale.read_bytes() == b"a user's file"
    assert main(["convert", "caffe", "alexnet", source, str(stale), "--overwrite"]) == 0
    assert stale.read_bytes() == out.read_bytes() and "wrote" in capsys.readouterr().out
    (tmp_path / "file").write_text("mine")
    blocked = str(tmp_path / "file" / "x.weights.h5")
    assert _convert_error(capsys, ["convert", "caffe", "alexnet", source, blocked]).startswith(
        f"error: cannot write OUT {blocked!r}: ")
    assert (tmp_path / "file").read_text() == "mine"


def _convert_error(capsys, argv):
    """stderr of `python -m kzoo.weights ARGV`, which must exit with 2 and print nothing else."""
    from kzoo.weights.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    assert exit_.value.code == 2 and out.out == ""
    return out.err


def test_convert_command_refuses_wrong_sources_and_outputs(tmp_path, capsys):
    from kzoo.weights.record import save_weights_atomic

    text = tmp_path / "not-hdf5.h5"
    text.write_text("not weights\n")
    out = str(tmp_path / "out.weights.h5")
    assert _convert_error(capsys, ["convert", "keras-applications", "resnet50", str(text), out]) == (
        f"error: {str(text)!r} is not an HDF5 file; keras.applications' weights are HDF5 .h5 files "
        f"(resnet50_weights_tf_dim_ordering_tf_kernels.h5).\n")
    mine = str(tmp_path / "mine.weights.h5")
    save_weights_atomic(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), mine)
    assert _convert_error(capsys, ["convert", "keras-applications", "resnet50", mine, out]) == (
        f"error: {mine!r} looks like a kzoo (Keras 3 .weights.h5) weights file, not keras.applications' .h5: it "
        f"needs no conversion; load it with kzoo.resnet50(weights=PATH).\n")
    other = _legacy_h5(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="d")]), tmp_path / "o.h5")
    assert _convert_error(capsys, ["convert", "keras-applications", "resnet50", other, out]).startswith(
        f"error: {other!r} does not hold keras.applications' ResNet50 weights (")
    original = open(mine, "rb").read()
    os.symlink(mine, tmp_path / "link.weights.h5")
    os.link(mine, tmp_path / "hard.weights.h5")
    for same in (mine, str(tmp_path / "link.weights.h5"), str(tmp_path / "hard.weights.h5")):
        assert _convert_error(capsys, ["convert", "keras-applications", "resnet50", mine, same, "--overwrite"]) == (
            f"error: OUT {same!r} is the SOURCE file itself; write the conversion to another path.\n")
    assert open(mine, "rb").read() == original
    assert _convert_error(capsys, ["convert", "caffe", "alexnet", str(tmp_path / "missing.caffemodel"), out]) == (
        f"error: SOURCE {str(tmp_path / 'missing.caffemodel')!r} does not exist.\n")
    os.mkdir(tmp_path / "dir.weights.h5")
    assert _convert_error(capsys, ["convert", "caffe", "alexnet", str(text), str(tmp_path / "dir.weights.h5")]) == (
        f"error: OUT {str(tmp_path / 'dir.weights.h5')!r} is a directory; name the .weights.h5 file to write.\n")
    assert not os.path.exists(out)


def test_weights_files_record_the_architecture_that_wrote_them(tmp_path):
    import shutil

    from kzoo.weights.record import save_weights_atomic

    source, plain = kzoo.plain20(), str(tmp_path / "plain20.weights.h5")
    save_weights_atomic(source, plain)
    with pytest.raises(ValueError) as err:  # same shapes, another architecture: Keras alone loads it silently
        kzoo.resnet20(weights=plain)
    assert str(err.value) == (
        f"weights file {plain!r} was written by kzoo's plain20, not resnet20: they differ from this model's layer "
        f"'conv2_block1_add' (Add) on. Load it into kzoo.plain20(...) built with the same options, or pass a "
        f"file saved from resnet20.")
    kernel = source.get_layer("conv1_conv").get_weights()[0]
    for model in (kzoo.plain20(weights=plain, name="mine"), kzoo.plain20(weights=plain, input_shape=(48, 48, 3)),
                  kzoo.plain20(weights=plain, include_top=False)):  # the record ignores names, sizes, the top
        np.testing.assert_array_equal(model.get_layer("conv1_conv").get_weights()[0], kernel)
    source.save_weights(str(tmp_path / "keras.weights.h5"))  # plain Keras: no record, only shapes are checked
    loaded = kzoo.resnet20(weights=str(tmp_path / "keras.weights.h5"))
    np.testing.assert_array_equal(loaded.get_layer("conv1_conv").get_weights()[0], kernel)
    shipped = registry.fetch("resnet20", "digits")
    with pytest.raises(ValueError) as err:  # the shipped file carries its record too
        kzoo.plain20(weights=shipped)
    assert str(err.value) == (
        f"weights file {shipped!r} was written by kzoo's resnet20, not plain20: they differ from this model's layer "
        f"'conv2_block1_out' (ReLU) on. Load it into kzoo.resnet20(...) built with the same options, or pass a file "
        f"saved from plain20.")
    shutil.copy(plain, tmp_path / "renamed.h5")
    with pytest.raises(ValueError) as err:
        kzoo.plain20(weights=str(tmp_path / "renamed.h5"))
    assert str(err.value) == (
        f"weights file {str(tmp_path / 'renamed.h5')!r} is a Keras 3 weights file without the .weights.h5 suffix "
        f"(Keras reads other .h5 names as the Keras 2 format): rename it to "
        f"{str(tmp_path / 'renamed.weights.h5')!r}.")
    legacy = _legacy_h5(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "keras2.h5")
    with pytest.raises(ValueError, match=r"^weights file '.*keras2.h5' does not fit 'plain20': it is a Keras 2 / "
                                         r"keras.applications .h5 file \(weights by layer name\); convert "):
        kzoo.plain20(weights=legacy)
    small = dict(input_shape=(67, 67, 3), classes=10)
    save_weights_atomic(kzoo.alexnet(**small), str(tmp_path / "alexnet.weights.h5"))
    with pytest.raises(ValueError) as err:  # same builder, an option that removes weightless layers
        kzoo.alexnet(**small, lrn=False, weights=str(tmp_path / "alexnet.weights.h5"))
    assert str(err.value) == (
        f"weights file {str(tmp_path / 'alexnet.weights.h5')!r} was written by kzoo's alexnet built with other "
        f"options: they differ from this model's layer 'pool1' (MaxPooling2D) on. Build the model the file was "
        f"saved from (the same builder and options), or pass a file saved from alexnet.")


def test_evaluate_command_reproduces_the_registered_error(capsys):
    from kzoo.evaluate.run import main

    assert main(["--model", "resnet20", "--weights", "digits", "--protocol", "center"]) == 0
    top1 = float(capsys.readouterr().out.split("top-1 error ")[1].split("%")[0])
    assert abs(top1 - registry.entry("resnet20", "digits")["metrics"]["top1_err"]) <= 100 / 359


def test_a_pth_that_is_not_a_state_dict_is_a_clear_error(tmp_path):
    import pickle
    import zipfile

    from kzoo.weights.torch_pickle import load_state_dict

    with zipfile.ZipFile(tmp_path / "model.pth", "w") as z:  # a whole pickled object, not a state dict
        z.writestr("archive/data.pkl", pickle.dumps(zipfile.ZipInfo("x")))
    with pytest.raises(ValueError, match="cannot be read as a state dict.*zipfile.ZipInfo.*state_dict"):
        load_state_dict(str(tmp_path / "model.pth"))


def _crafted_error(tmp_path, monkeypatch, read, write):
    """The ValueError text `read` raises on the file `write` crafts."""
    path = tmp_path / "crafted"
    write(path)
    monkeypatch.undo()
    with pytest.raises(ValueError) as err:
        read(str(path))
    return str(err.value)


def test_pth_tensors_are_checked_against_their_storage(tmp_path, monkeypatch):
    from kzoo.weights.torch_pickle import load_state_dict

    state = {"fc.weight": np.arange(6, dtype="f4").reshape(2, 3), "fc.bias": np.ones(2, "f4")}
    _write_pth(tmp_path / "t.pth", state, monkeypatch, layout={"fc.weight": (0, (3, 2), (1, 3))})
    monkeypatch.undo()  # a legal strided view (a transpose) still reads the right numbers
    np.testing.assert_array_equal(load_state_dict(str(tmp_path / "t.pth"))["fc.weight"], [[0, 3], [1, 4], [2, 5]])
    head = f"{str(tmp_path / 'crafted')!r} cannot be read as a state dict: "
    cases = [
        (dict(layout={"fc.weight": (0, (2, 4), (4, 1))}),
         "tensor 'fc.weight' (offset 0, size (2, 4), stride (4, 1)) reaches element 8 of storage '0', which holds "
         "6: the file is corrupt."),
        (dict(layout={"fc.weight": (5, (2, 3), (3, 1))}),
         "tensor 'fc.weight' (offset 5, size (2, 3), stride (3, 1)) reaches element 11 of storage '0', which "
         "holds 6: the file is corrupt."),
        (dict(layout={"fc.weight": (0, (2, 3), (10**12, 1))}),
         "tensor 'fc.weight' (offset 0, size (2, 3), stride (1000000000000, 1)) reaches element 1000000000003 of "
         "storage '0', which holds 6: the file is corrupt."),
        (dict(layout={"fc.weight": (0, (2, 3), (-3, 1))}),
         "tensor 'fc.weight' has a negative offset, size or stride (offset 0, size (2, 3), stride (-3, 1))."),
        (dict(layout={"fc.weight": (0, (-1, 3), (3, 1))}),
         "tensor 'fc.weight' has a negative offset, size or stride (offset 0, size (-1, 3), stride (3, 1))."),
        (dict(layout={"fc.weight": (0, (10**12,), (0,))}),
         "tensor 'fc.weight' declares 1000000000000 elements (size (1000000000000,)) but storage '0' holds 6: the "
         "file is corrupt."),
        (dict(layout={"fc.weight": (0, (2, 3), (1,))}),
         "tensor 'fc.weight' has a malformed layout (offset 0, size (2, 3), stride (1,))."),
        (dict(pid={"fc.bias": lambda cls, key, n: ("storage", "FloatStorage", key, "cpu", n)}),
         "storage entry '1' names 'FloatStorage', not a torch storage type."),
        (dict(pid={"fc.bias": lambda cls, key, n: ("storage", cls, "9", "cpu", n)}),
         "storage entry '9' has no file 'archive/data/9' in the archive."),
        (dict(data={"fc.bias": b"\0" * 7}),
         "storage entry '1' holds 7 bytes, not a whole number of FloatStorage elements (4 bytes each)."),
        (dict(storage="BFloat16Storage"),
         "tensor 'fc.weight' is stored as BFloat16Storage, which is not supported; convert it to float32 first."),
    ]
    for crafted, message in cases:
        got = _crafted_error(tmp_path, monkeypatch, load_state_dict,
                             lambda path: _write_pth(path, state, monkeypatch, **crafted))
        assert got == head + message


def _caffe_layer(name, *blobs):
    return _field(2, _field(4, name.encode()) + b"".join(_field(6, b) for b in blobs))


def _caffe_shaped_blob(dims, floats):
    shape = _field(7, _field(1, b"".join(_varint(d) for d in dims)))  # BlobShape, packed int64 dims
    return shape + _field(5, np.asarray(floats, "<f4").tobytes())


def test_caffemodel_fields_and_blob_shapes_are_checked(tmp_path, monkeypatch):
    from kzoo.weights.caffe import read_caffemodel

    good = _caffe_layer("conv1", _caffe_blob(np.ones((2, 3), "f4")))
    second = _caffe_layer("conv2", _caffe_blob(np.ones((4,), "f4")))
    negative = _varint(1 << 3) + _varint(2**64 - 1) + _field(5, np.ones(6, "<f4").tobytes())  # num = -1
    cases = [
        (good + b"\x80", f"the field after layer 'conv1': a varint at byte {len(good)} runs past the end."),
        (good + second[:-5], f"the field after layer 'conv1': field 2 at byte {len(good)} declares "
                             f"{len(second) - 2} bytes, only {len(second) - 7} remain."),
        (b"\xff" * 11, "the net's first field: a varint at byte 0 is longer than 10 bytes."),
        (_caffe_layer("fc8", _caffe_shaped_blob([2, 4], np.ones(6))),
         "layer 'fc8' blob 0: its shape [2, 4] needs 8 values but it holds 6."),
        (_caffe_layer("fc8", _caffe_shaped_blob([2**32, 2**32], [])),  # int64 product wraps to 0 == 0 values
         "layer 'fc8' blob 0: its shape [4294967296, 4294967296] needs 18446744073709551616 values but it holds 0."),
        (_caffe_layer("fc8", negative), "layer 'fc8' blob 0: its shape [-1, 1, 1, 1] has a negative dimension."),
        (_caffe_layer("fc8", _caffe_blob(np.ones(2, "f4")), _varint(5 << 3) + _varint(10**9)),
         "layer 'fc8' blob 1: its field 5 (float32 values) has wire type 0."),  # not 10**9 zero bytes
        (_caffe_layer("fc8", _field(5, b"\0" * 7)), "layer 'fc8' blob 0: its field 5 holds 7 bytes, not a whole "
                                                    "number of float32 values."),
        (good + good, "layer 'conv1': a second layer of that name has weights."),
    ]
    for data, message in cases:
        got = _crafted_error(tmp_path, monkeypatch, read_caffemodel, lambda path: path.write_bytes(data))
        assert got == f"{str(tmp_path / 'crafted')!r} is corrupt, truncated or not a caffemodel: {message}"


def test_caffe_converter_names_the_layer_whose_blobs_do_not_fit():
    from kzoo.weights.convert import caffe_alexnet

    blobs = _caffe_alexnet_blobs(np.random.default_rng(10))
    blobs["fc8"] = blobs["fc8"][:1]
    with pytest.raises(ValueError) as err:
        caffe_alexnet(blobs)
    assert str(err.value) == "the caffemodel: layer 'fc8' has 1 blobs; kzoo's alexnet needs two (weights, bias)."
    blobs = _caffe_alexnet_blobs(np.random.default_rng(10))
    blobs["conv3"][0] = blobs["conv3"][0].reshape(384, -1)
    with pytest.raises(ValueError) as err:
        caffe_alexnet(blobs)
    assert str(err.value) == ("the caffemodel: layer 'conv3' has a weight blob of shape (384, 2304); kzoo's alexnet "
                              "needs 4 dimensions (out, in, h, w).")


def test_a_weights_file_with_external_arrays_is_named_for_what_it_is(tmp_path):
    """HDF5 can keep a dataset's values in another file; Keras refuses those, and the error
    says so (not that the arrays are stored under other names)."""
    import h5py

    kzoo.resnet20().save_weights(str(tmp_path / "r.weights.h5"))
    with h5py.File(tmp_path / "r.weights.h5", "r") as src, h5py.File(tmp_path / "ext.weights.h5", "w") as out:
        out.attrs.update(src.attrs)
        moved = []

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                out.require_group(name).attrs.update(obj.attrs)
            elif not moved:
                moved.append(name)
                np.asarray(obj).tofile(tmp_path / "raw.bin")
                out.create_dataset(name, shape=obj.shape, dtype=obj.dtype,
                                   external=[(str(tmp_path / "raw.bin"), 0, h5py.h5f.UNLIMITED)])
            else:
                out.create_dataset(name, data=obj[()])

        src.visititems(copy)
    with pytest.raises(ValueError, match=rf"keeps its arrays \({re.escape(moved[0])}\) in files outside it \(HDF5 "
                                         r"external storage\), which Keras does not read: save the weights into one"):
        kzoo.resnet20(weights=str(tmp_path / "ext.weights.h5"))


def test_weights_offline_is_one_error_with_the_way_in(tmp_path, monkeypatch):
    """No network: one exception (no chain), the URL once, the cache folder to put the file in
    and the convert command."""
    entries = {m: dict(v) for m, v in registry.manifest().items()}
    url = "http://127.0.0.1:9/resnet50_weights_tf_dim_ordering_tf_kernels.h5"  # nothing listens there
    entries["resnet50"] = {"imagenet": {**entries["resnet50"]["imagenet"], "url": url}}
    monkeypatch.setattr(registry, "manifest", lambda: entries)
    monkeypatch.setenv("KZOO_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError) as err:
        kzoo.resnet50(weights="imagenet")
    text = str(err.value)
    assert err.value.__suppress_context__ and err.value.__cause__ is None
    assert text.startswith(f"could not download the resnet50 'imagenet' weights from {url} (")
    assert text.count(url) == 1 and "None --" not in text and "\n" not in text
    assert f"Put that file in {tmp_path / 'cache' / 'kzoo' / 'downloads'} under the name " \
           f"'resnet50_weights_tf_dim_ordering_tf_kernels.h5'" in text
    assert "python -m kzoo.weights convert keras-applications resnet50 FILE OUT.weights.h5" in text
