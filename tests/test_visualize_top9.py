"""Top-9 activations over a stream (Fig. 2) and the feature-evolution callback (Fig. 4)."""

import keras
import numpy as np
import pytest

from kzoo.data.sources import builtin_digits
from kzoo.visualize.deconv import Deconvnet, crop_patch, patch_box, receptive_field
from kzoo.visualize.top9 import FeatureEvolution, top9_figure, top_activations


def _small(classes=10, size=32, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 5, name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="fc")(x))


def test_top_activations_stream_equals_one_pass_over_all_images(tmp_path):
    model = _small()
    images = np.random.default_rng(0).normal(size=(40, 32, 32, 3)).astype("float32")
    batches = [images[i : i + 7] for i in range(0, 40, 7)]  # uneven last batch
    results = top_activations(model, batches, "relu2", feature_maps=[0, 5], k=9)
    acts = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("relu2").output)(images))
    field = receptive_field(model, "relu2")
    assert field[0][:2] == (2, 10)  # 5 + (2 - 1) + (3 - 1) * 2
    deconv = Deconvnet(model)
    for m, entries in results.items():
        per_image = acts[..., m].reshape(40, -1).max(1)
        assert [e["index"] for e in entries] == list(np.argsort(-per_image)[:9])
        np.testing.assert_allclose([e["value"] for e in entries], np.sort(per_image)[::-1][:9], rtol=1e-6)
        for e in entries[:3]:
            y, x = e["position"]
            assert acts[e["index"], y, x, m] == pytest.approx(e["value"])
            box = patch_box(field, y, x)
            np.testing.assert_array_equal(e["patch"], crop_patch(images[e["index"]], box))
            assert e["patch"].shape == (10, 10, 3)
            proj, _, _ = deconv.project(images[e["index"]][None], "relu2", feature_map=m, position=(y, x))
            np.testing.assert_allclose(e["projection"], crop_patch(proj[0], box), rtol=1e-5, atol=1e-6)
    path = top9_figure(results, str(tmp_path / "fig" / "top9.png"), title="relu2")
    assert open(path, "rb").read(4) == b"\x89PNG"
    assert [p.name for p in (tmp_path / "fig").iterdir()] == ["top9.png"]


def test_top_activations_errors():
    model = _small()
    with pytest.raises(ValueError, match=r"feature maps \[8\] are outside the 8 maps of layer 'relu2'"):
        top_activations(model, [np.zeros((2, 32, 32, 3))], "relu2", feature_maps=[1, 8])
    with pytest.raises(ValueError, match="no images"):
        top_activations(model, [], "relu2")
    with pytest.raises(ValueError, match="no layer 'conv9'; valid layers"):
        top_activations(model, [np.zeros((2, 32, 32, 3))], "conv9")


def test_feature_evolution_records_chosen_epochs_during_engine_training(tmp_path):
    from kzoo.recipes import resnet_cifar
    from kzoo.train.engine import TrainConfig, train
    from kzoo.train.schedules import StepsAt

    images = np.random.default_rng(1).normal(size=(6, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "evolution.png")
    callback = FeatureEvolution(lambda: images, "relu1", path, feature_maps=[0, 2, 4], epochs=(1, 3))
    config = TrainConfig(model="custom", run_dir=str(tmp_path / "run"), schedule=StepsAt(0.05, (), 1.0),
                         preprocess=resnet_cifar.RECIPE.preprocess, batch_size=16, epochs=3, momentum=0.9,
                         weight_decay=0.0, steps_per_epoch=4, val_steps=1, verbose=0)
    _, model = train(config, builtin_digits(), model_fn=lambda classes: _small(classes), callbacks=[callback])
    assert sorted(callback.frames) == [1, 3]  # epoch 2 is not in the list
    field = receptive_field(model, "relu1")
    acts = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer("relu1").output)(images))
    for m in (0, 2, 4):
        i, y, x = np.unravel_index(acts[..., m].argmax(), acts.shape[:3])
        proj, _, _ = Deconvnet(model).project(images[i : i + 1], "relu1", units=[(y, x, m)])
        np.testing.assert_allclose(callback.frames[3][m], crop_patch(proj[0], patch_box(field, y, x)), rtol=1e-5,
                                   atol=1e-6)  # the last frame is the trained model's projection
        assert not np.allclose(callback.frames[1][m], callback.frames[3][m])  # training changed the filters
    assert open(path, "rb").read(4) == b"\x89PNG"
    saved = np.load(str(tmp_path / "evolution.npz"))
    assert sorted(saved.files) == sorted(f"epoch{e}_map{m}" for e in (1, 3) for m in (0, 2, 4))


def test_feature_evolution_works_with_model_fit(tmp_path):
    model = _small(classes=3)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(32, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 32)
    callback = FeatureEvolution(x[:4], "relu2", str(tmp_path / "e.png"), epochs=(1, 2))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert sorted(callback.frames) == [1, 2] and len(callback.frames[2]) == 8  # default: the first 8 maps


def test_recipe_records_feature_evolution(tmp_path):
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import main

    run = tmp_path / "run"
    assert main(resnet_cifar.RECIPE, ["--depth", "20", "--epochs", "2", "--steps-per-epoch", "3", "--evolution",
                                      "--run-dir", str(run)]) == 0
    saved = np.load(str(run / "evolution.npz"))
    assert sorted(saved.files) == sorted(f"epoch{e}_map{m}" for e in (1, 2) for m in range(8))
    assert saved["epoch1_map0"].shape[-1] == 3 and (run / "evolution.png").exists()
