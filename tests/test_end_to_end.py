"""The model carries its preprocessing (issue 29): `TrainedModel.end_to_end()` takes raw uint8
images of any size; saved as .keras it classifies them on any backend, and exported as a
SavedModel, ONNX or LiteRT file it gives the Keras model's classes."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo import preprocessing
from kzoo.data.sources import builtin_digits
from kzoo.data.transforms import eval_map
from kzoo.layers import CenterView
from kzoo.preprocessing import Preprocess

PIPELINES = [
    Preprocess(resize=77, center=77, crop=67, mean="pixel"),  # AlexNet's pipeline at 67 px
    Preprocess(resize=(40, 60), crop=36, mean="channel"),  # ResNet's: the low end, no square
    Preprocess(resize=48, crop=40, mean="channel", color="BGR", scale=0.5),  # Caffe weights' order and scale
]
SHAPES = [(90, 120, 3), (77, 77, 3), (200, 81, 3), (41, 300, 3)]


def _case(p, shape, seed):
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0, 255, (77, 77, 3) if p.pixel_mean else (3,)).astype(np.float32)
    return rng.integers(0, 256, shape).astype(np.uint8), mean


def _within_one_level(view, reference, p):
    """Equal but where an 8-bit rounding of the resize tied: there one level (times the scale)."""
    off = np.abs(view - reference) > 2e-3
    assert np.allclose(np.abs(view - reference)[off], p.scale, atol=2e-3)
    assert off.mean() < 0.01


@pytest.mark.parametrize("p", PIPELINES)
def test_the_in_model_view_equals_the_training_pipelines_validation_view(p):
    any_size = tf.function(lambda layer, x: layer(x))
    for i, shape in enumerate(SHAPES):
        image, mean = _case(p, shape, i)
        layer = CenterView.of(p, mean)
        reference = eval_map(p, {"mean": mean})(tf.constant(image), 0)[0].numpy()  # the training pipeline's
        known = keras.ops.convert_to_numpy(layer(image[None]))[0]  # sizes known: constant matrices
        unknown = any_size.get_concrete_function(layer, tf.TensorSpec((None, None, None, 3), tf.uint8))(
            tf.constant(image[None])).numpy()[0]  # sizes known only when it runs: matrices in the graph
        assert known.shape == unknown.shape == (p.crop, p.crop, 3)
        _within_one_level(known, reference, p)
        _within_one_level(unknown, reference, p)
        np.testing.assert_allclose(known, preprocessing.center_view(image, p, mean), atol=p.scale + 2e-3)


def test_the_layer_keeps_the_mean_it_needs_and_refuses_nothing_it_was_given():
    p = PIPELINES[0]
    image_mean = np.full((77, 77, 3), 100, np.float32)
    assert CenterView.of(p, image_mean).mean.shape == (77, 77, 3)  # a mean image where the recipe squares
    colour = CenterView.of(PIPELINES[1], image_mean)  # else its colour, as kzoo.preprocessing.base_image
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(colour.mean), [100, 100, 100])
    config = CenterView.of(p, image_mean).get_config()
    assert config["preprocess"] == p.to_dict() and config["mean_shape"] == [77, 77, 3]
    assert CenterView.from_config(config).preprocess == p


JAX_SCRIPT = r"""
import json, sys
sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
import numpy as np, keras, kzoo.layers, kzoo.registry
spec = json.load(open(sys.argv[1]))
out = {}
for key, case in spec["layers"].items():
    layer = kzoo.layers.CenterView.of(kzoo.registry.Preprocess.from_dict(case["p"]), np.load(case["mean"]))
    out[key] = keras.ops.convert_to_numpy(layer(np.load(case["image"])[None]))[0].tolist()
model = keras.saving.load_model(spec["keras"])
images = np.load(spec["images"])
out["digits"] = keras.ops.convert_to_numpy(model.predict(images, verbose=0)).tolist()
big = np.repeat(np.repeat(images[:3], 5, axis=1), 7, axis=2)  # 40x56: another size, another aspect
out["big"] = keras.ops.convert_to_numpy(model.predict(big, verbose=0)).tolist()
out["backend"] = keras.backend.backend()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def digits_model():
    source = builtin_digits()
    images = np.stack([image.numpy() for image, _ in source.val])
    return kzoo.load("resnet20", weights="digits"), images


def test_a_saved_keras_file_classifies_raw_images_under_jax(tmp_path, digits_model, jax_env):
    trained, images = digits_model
    path = trained.save(str(tmp_path / "digits.keras"))
    spec = {"keras": path, "images": str(tmp_path / "images.npy"), "layers": {}}
    np.save(spec["images"], images)
    references = {}
    # The digits model's own layer squares and takes a mean image; a layer of another pipeline
    # (no square, a mean colour, BGR, a scale) is compared alone: each compiles apart under JAX.
    for n, p in [(2, PIPELINES[2])]:
        image, mean = _case(p, SHAPES[3], 10 + n)
        for name, value in (("image", image), ("mean", mean)):
            np.save(tmp_path / f"{name}{n}.npy", value)
        spec["layers"][str(n)] = {"p": p.to_dict(), "image": str(tmp_path / f"image{n}.npy"),
                                  "mean": str(tmp_path / f"mean{n}.npy")}
        references[str(n)] = (p, eval_map(p, {"mean": mean})(tf.constant(image), 0)[0].numpy())
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "spec.json")], capture_output=True,
                          text=True, env=jax_env, cwd=os.path.dirname(os.path.dirname(__file__)), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["backend"] == "jax"
    for key, (p, reference) in references.items():  # JAX's float sums: the same one-level bound
        _within_one_level(np.array(out[key], np.float32), reference, p)
    expected = trained.end_to_end().predict(images, verbose=0)
    np.testing.assert_allclose(out["digits"], expected, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(out["digits"], 1), trained.predict(images).argmax(1))
    big = np.repeat(np.repeat(images[:3], 5, axis=1), 7, axis=2)
    np.testing.assert_allclose(out["big"], trained.predict(big), atol=1e-5)


def test_onnx_and_litert_files_give_the_keras_models_classes(tmp_path, digits_model):
    ort = pytest.importorskip("onnxruntime")  # the test extras install both
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    trained, images = digits_model
    expected = trained.end_to_end().predict(images, verbose=0)
    np.testing.assert_allclose(expected, trained.predict(images), atol=1e-5)  # = the numpy view

    session = ort.InferenceSession(trained.export(str(tmp_path / "digits.onnx"), format="onnx"))
    (feed,) = session.get_inputs()
    assert feed.type == "tensor(uint8)" and feed.shape[-1] == 3 and all(isinstance(d, str) for d in feed.shape[:3])
    onnx = session.run(None, {feed.name: images})[0]
    np.testing.assert_array_equal(onnx.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(onnx, expected, atol=1e-4)

    interpreter = litert.Interpreter(trained.export(str(tmp_path / "digits.tflite"), format="litert"))
    (feed,) = interpreter.get_input_details()
    assert list(feed["shape_signature"]) == [-1, -1, -1, 3] and feed["dtype"] == np.uint8
    interpreter.resize_tensor_input(feed["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(feed["index"], images)
    interpreter.invoke()
    tflite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_array_equal(tflite.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(tflite, expected, atol=1e-4)


def test_save_and_export_refuse_what_they_cannot_write_and_leave_nothing_half_written(tmp_path, digits_model,
                                                                                     monkeypatch):
    trained, _ = digits_model
    (tmp_path / "taken.keras").write_text("mine")
    with pytest.raises(ValueError, match="exists; kzoo does not overwrite it"):
        trained.save(str(tmp_path / "taken.keras"))
    assert (tmp_path / "taken.keras").read_text() == "mine"
    with pytest.raises(ValueError, match=r"ends in \.keras"):
        trained.save(str(tmp_path / "model.h5"))
    with pytest.raises(ValueError, match=r"ends in \.onnx"):
        trained.export(str(tmp_path / "model.tflite"), format="onnx")
    with pytest.raises(ValueError, match="unknown export format 'torchscript'; expected one of tf_saved_model"):
        trained.export(str(tmp_path / "m"), format="torchscript")
    with pytest.raises(FileNotFoundError, match="its folder .*absent.* does not exist; create it"):
        trained.save(str(tmp_path / "absent" / "m.keras"))

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken)
    with pytest.raises(OSError, match="No space left"):
        trained.save(str(tmp_path / "full.keras"))
    assert sorted(os.listdir(tmp_path)) == ["taken.keras"]  # no staging folder, no partial file


def test_the_registry_states_each_models_pipeline_and_lists_the_models_with_weights():
    from kzoo.registry import PIPELINES, get_entry

    with open(os.path.join(os.path.dirname(kzoo.__file__), "weights", "manifest.json"), encoding="utf-8") as f:
        entries = json.load(f)["weights"]
    manifest = {}
    for record in entries:
        manifest.setdefault(record["model"], []).append(record["name"])
    with_weights = [name for name in kzoo.list_models() if name in manifest]
    assert kzoo.list_models(pretrained=True) == with_weights == ["resnet50", "resnet101", "resnet152", "resnet20"]
    assert kzoo.list_models(paper="resnet", pretrained=True) == with_weights
    assert kzoo.list_models(paper="alexnet", pretrained=True) == []
    assert get_entry("resnet20").weights == sorted(manifest["resnet20"]) and get_entry("alexnet").weights == []
    with pytest.raises(ValueError, match="unknown paper 'vgg'; expected one of alexnet, zfnet, overfeat, resnet"):
        kzoo.list_models(paper="vgg")
    # The papers' pipelines (SPEC): AlexNet §2/§4.1, ZFNet §3, OverFeat §3.1, ResNet §3.4 and §4.2.
    assert PIPELINES["alexnet"] == Preprocess(resize=256, center=256, crop=224, pca=0.1, mean="pixel")
    assert PIPELINES["resnet"] == Preprocess(resize=(256, 480), crop=224, pca=0.1, mean="channel")
    assert PIPELINES["resnet_cifar"] == Preprocess(resize=32, center=32, crop=32, pad=4, mean="pixel")
    for name in kzoo.list_models():
        entry = get_entry(name)
        paper = "resnet_cifar" if entry.paper == "resnet" and entry.default_size == 32 else entry.paper
        assert entry.preprocess is PIPELINES[paper]
        assert entry.preprocess_at().crop == entry.default_size  # OverFeat accurate: 221 from the 231 pipeline
    small = get_entry("alexnet").preprocess_at(67)  # another size: the whole pipeline shrinks (the demos')
    assert (small.resize, small.center, small.crop) == (77, 77, 67)
    assert get_entry("alexnet").preprocess_at(67, shrink=False) == Preprocess(resize=256, center=256, crop=67,
                                                                              pca=0.1, mean="pixel")
    from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet
    for recipe, key in [(alexnet, "alexnet"), (zfnet, "zfnet"), (overfeat, "overfeat"), (resnet, "resnet"),
                        (resnet_cifar, "resnet_cifar")]:
        assert recipe.RECIPE.preprocess is PIPELINES[key]  # the recipe trains with the registry's record
