"""Top-9 activations over a stream (Fig. 2) and the feature-evolution callback (Fig. 4)."""

import keras
import numpy as np
import pytest

from kzoo.data.sources import builtin_digits
from kzoo.visualize.deconv import Deconvnet, crop_patch, patch_box, receptive_field
from kzoo.visualize.top9 import (FeatureEvolution, evolution_figure, evolution_layers, strongest_activations,
                                top9_figure, top_activations)


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


def _five(classes=10, size=20, seed=0):
    """Five conv/ReLU layers named as AlexNet's and ZFNet's (relu1..relu5), a few maps each."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for i, (filters, kernel) in enumerate([(4, 5), (6, 3), (6, 3), (5, 3), (4, 3)], 1):
        x = keras.layers.Conv2D(filters, kernel, padding="same", bias_initializer="random_normal", name=f"conv{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i in (1, 2):
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="fc")(x))


LAYERS = [f"relu{i}" for i in range(1, 6)]


def _brute_force(model, images):
    """{layer: (N, H, W, C) activations}: the plain model, all images in one call (no deconvnet)."""
    outputs = keras.Model(model.input, [model.get_layer(name).output for name in LAYERS])(images)
    return {name: keras.ops.convert_to_numpy(out) for name, out in zip(LAYERS, outputs)}


def test_feature_evolution_finds_the_strongest_activation_over_all_images(tmp_path):
    model = _five()
    rng = np.random.default_rng(3)
    images = rng.normal(size=(40, 20, 20, 3)).astype("float32") * rng.uniform(0.5, 1.5, (40, 1, 1, 1)).astype("float32")
    images[37] *= 2.5  # a strong image far past the first 16 (the old validation subset)
    callback = FeatureEvolution(lambda: iter([images[i : i + 7] for i in range(0, 40, 7)]), None,
                                str(tmp_path / "evolution.png"), epochs=(1,), maps_per_layer=3, seed=5)
    callback.set_model(model)
    callback.on_epoch_end(0)
    assert callback.layers == LAYERS  # the model's stages, by name
    acts, deconv = _brute_force(model, images), Deconvnet(model)
    beyond_16 = 0
    for layer in LAYERS:
        maps = callback.feature_maps[layer]
        assert len(maps) == 3 and maps == sorted(set(maps)) and list(callback.frames[1][layer]) == maps
        field = receptive_field(model, layer)
        for m in maps:
            a = acts[layer][..., m]
            i, y, x = np.unravel_index(a.argmax(), a.shape)  # brute force over all 40 images and positions
            entry = callback.frames[1][layer][m]
            assert a.max() > 0  # a live map: the argmax is not a tie between zeros
            assert (entry["index"], entry["position"]) == (i, (y, x))
            assert entry["value"] == pytest.approx(float(a.max()), rel=1e-5)
            beyond_16 += int(i >= 16 and a[:16].max() < a.max())  # searching the first 16 would miss it
            proj, _, _ = deconv.project(images[i : i + 1], layer, units=[(y, x, m)])
            np.testing.assert_allclose(entry["projection"], crop_patch(proj[0], patch_box(field, y, x)),
                                       rtol=1e-5, atol=1e-6)
    assert beyond_16 >= 10  # 12 of the 15 maps here: the case the old 16-image search gets wrong
    saved = np.load(str(tmp_path / "evolution.npz"))
    entry = callback.frames[1]["relu4"][callback.feature_maps["relu4"][0]]
    key = f"epoch1_relu4_map{callback.feature_maps['relu4'][0]}"
    assert list(saved[key + "_unit"]) == [entry["index"], *entry["position"]]
    np.testing.assert_array_equal(saved[key], entry["projection"])


def test_strongest_activations_equals_top_activations_per_layer():
    model = _five()
    images = np.random.default_rng(4).normal(size=(30, 20, 20, 3)).astype("float32")
    batches = [images[i : i + 8] for i in range(0, 30, 8)]
    both = strongest_activations(model, batches, ["relu2", "relu5"], {"relu2": [1, 4], "relu5": [0, 3]}, k=3)
    for layer, maps in (("relu2", [1, 4]), ("relu5", [0, 3])):
        acts = keras.ops.convert_to_numpy(keras.Model(model.input, model.get_layer(layer).output)(images))
        for m in maps:  # the brute force over every image, independently of top_activations
            per_image = acts[..., m].reshape(30, -1).max(1)
            entries = both[layer][m]
            assert [e["index"] for e in entries] == list(np.argsort(-per_image)[:3])
            np.testing.assert_allclose([e["value"] for e in entries], np.sort(per_image)[::-1][:3], rtol=1e-6)
            for e in entries:
                assert acts[e["index"], e["position"][0], e["position"][1], m] == pytest.approx(e["value"])


def test_feature_evolution_errors(tmp_path):
    from kzoo import create_model

    resnet = create_model("resnet20", input_shape=(32, 32, 3), classes=10)  # other families: their stage outputs
    assert evolution_layers(resnet) == ["conv1_relu", "conv2_block3_out", "conv3_block3_out", "conv4_block3_out"]
    model = _small()
    callback = FeatureEvolution(np.zeros((2, 32, 32, 3)), None, str(tmp_path / "unused.png"), epochs=(1,))
    inputs = keras.Input((32, 32, 3))
    unnamed = keras.layers.ReLU(name="r")(keras.layers.Conv2D(2, 3, name="c")(inputs))
    callback.set_model(keras.Model(inputs, unnamed, name="custom"))
    with pytest.raises(ValueError, match=r"'custom' has no layers kzoo knows as its stages .* name them: "
                                         r"FeatureEvolution\(images, layers=\[\.\.\.\]"):
        callback.on_epoch_end(0)
    with pytest.raises(ValueError, match=r"feature maps \[6\] are outside the 6 maps of layer 'relu1'"):
        callback = FeatureEvolution(np.zeros((2, 32, 32, 3)), ["relu1", "relu2"], str(tmp_path / "unused.png"),
                                    feature_maps=[6], epochs=(1,))  # map 6 is in relu2 (8 maps), not relu1 (6)
        callback.set_model(model)
        callback.on_epoch_end(0)


def test_feature_evolution_records_chosen_epochs_during_engine_training(tmp_path):
    from kzoo.recipes import resnet_cifar
    from kzoo.train.engine import TrainConfig, train
    from kzoo.train.schedules import StepsAt

    images = np.random.default_rng(1).normal(size=(24, 20, 20, 3)).astype("float32")
    path = str(tmp_path / "evolution.png")
    callback = FeatureEvolution(lambda: images, None, path, epochs=(1, 3), batch_size=10)
    config = TrainConfig(model="custom", run_dir=str(tmp_path / "run"), schedule=StepsAt(0.05, (), 1.0),
                         preprocess=resnet_cifar.RECIPE.preprocess.scaled(20), batch_size=16, epochs=3, momentum=0.9,
                         weight_decay=0.0, steps_per_epoch=4, val_steps=1, verbose=0)
    _, model = train(config, builtin_digits(), model_fn=lambda classes: _five(classes), callbacks=[callback])
    assert sorted(callback.frames) == [1, 3]  # epoch 2 is not in the list
    acts = _brute_force(model, images)
    for layer in LAYERS:
        for m in callback.feature_maps[layer]:
            i, y, x = np.unravel_index(acts[layer][..., m].argmax(), acts[layer].shape[:3])
            assert (callback.frames[3][layer][m]["index"], callback.frames[3][layer][m]["position"]) == (i, (y, x))
    first = callback.frames[1]["relu1"][callback.feature_maps["relu1"][0]]["projection"]
    assert not np.allclose(first, callback.frames[3]["relu1"][callback.feature_maps["relu1"][0]]["projection"])
    fig = evolution_figure(callback.frames)  # Fig. 4's layout: a block per layer, maps x recorded epochs
    assert [block._suptitle.get_text() for block in fig.subfigs] == LAYERS
    for block, layer in zip(fig.subfigs, LAYERS):
        assert len(block.axes) == len(callback.feature_maps[layer]) * 2 == 8
        assert [ax.get_title() for ax in block.axes[:2]] == ["epoch 1", "epoch 3"]
        assert [block.axes[r * 2].get_ylabel() for r in range(4)] == [f"map {m}" for m in callback.feature_maps[layer]]
    assert open(path, "rb").read(4) == b"\x89PNG"
    saved = np.load(str(tmp_path / "evolution.npz"))
    assert sorted(k for k in saved.files if k.endswith("_value")) == sorted(
        f"epoch{e}_{layer}_map{m}_value" for e in (1, 3) for layer in LAYERS for m in callback.feature_maps[layer])


def test_feature_evolution_works_with_model_fit(tmp_path):
    model = _small(classes=3)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(32, 32, 32, 3)).astype("float32"), rng.integers(0, 3, 32)
    callback = FeatureEvolution(x[:4], "relu2", str(tmp_path / "e.png"), epochs=(1, 2))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert sorted(callback.frames) == [1, 2] and list(callback.frames[2]) == ["relu2"]
    assert len(callback.frames[2]["relu2"]) == 4  # default: 4 random maps of the 8


def test_feature_evolution_resumed_run_keeps_the_earlier_epochs(tmp_path):
    model = _small()
    images = np.random.default_rng(5).normal(size=(12, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "evolution.png")
    npz = tmp_path / "evolution.npz"

    def callback(seed=1):  # as the recipe makes it: random maps drawn with the run's seed
        cb = FeatureEvolution(images, ["relu1", "relu2"], path, epochs=(1, 2, 3), maps_per_layer=3, seed=seed)
        cb.set_model(model)
        return cb

    first = callback()
    first.on_epoch_end(0)
    first.on_epoch_end(1)
    before = dict(np.load(str(npz)))
    assert sorted({k.split("_")[0] for k in before}) == ["epoch1", "epoch2"]
    model.get_layer("conv1").kernel.assign(model.get_layer("conv1").kernel * -1.5)  # training went on
    resumed = callback()  # a resumed run: a new instance, the same seed -> the same maps
    resumed.on_epoch_end(2)
    assert resumed.feature_maps == first.feature_maps and sorted(resumed.frames) == [1, 2, 3]
    after = np.load(str(npz))
    assert sorted(after.files) == sorted([*before, *(k.replace("epoch1", "epoch3", 1) for k in before
                                                      if k.startswith("epoch1_"))])
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)  # the earlier epochs' arrays, unchanged
    assert not np.allclose(after["epoch3_relu1_map%d" % first.feature_maps["relu1"][0]],
                           before["epoch2_relu1_map%d" % first.feature_maps["relu1"][0]])
    fig = evolution_figure(resumed.frames)
    assert [ax.get_title() for ax in fig.subfigs[0].axes[:3]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert [fig.subfigs[0].axes[r * 3].get_ylabel() for r in range(3)] == [
        f"map {m}" for m in first.feature_maps["relu1"]]
    # a resume that redoes epoch 2 (an earlier checkpoint) replaces it and the later epochs
    redo = callback()
    redo.on_epoch_end(1)
    assert sorted(redo.frames) == [1, 2] and sorted({k.split("_")[0] for k in np.load(str(npz)).files}) == [
        "epoch1", "epoch2"]
    # another seed chooses other maps: the old npz is foreign -> a warning, a fresh start, no crash
    other = callback(seed=7)
    assert other.feature_maps is None
    with pytest.warns(UserWarning, match="other layers/feature maps"):
        other.on_epoch_end(2)
    assert other.feature_maps != first.feature_maps and sorted(other.frames) == [3]
    assert sorted({k.split("_")[0] for k in np.load(str(npz)).files}) == ["epoch3"]
    npz.write_bytes(b"not an npz")  # unreadable: the same
    broken = callback()
    with pytest.warns(UserWarning, match="ignoring the earlier"):
        broken.on_epoch_end(1)
    assert sorted(broken.frames) == [2] and sorted({k.split("_")[0] for k in np.load(str(npz)).files}) == ["epoch2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolution.npz", "evolution.png"]


def test_recipe_records_feature_evolution_over_the_training_images(tmp_path):
    from kzoo.recipes import zfnet
    from kzoo.recipes.common import Run, main

    with pytest.raises(ValueError, match=r"^argument --evolution-images: expected an integer >= 0, got -1$"):
        Run(evolution_images=-1)
    run = tmp_path / "run"
    assert main(zfnet.RECIPE, ["--smoke", "--epochs", "2", "--evolution", "--evolution-images", "100",
                               "--run-dir", str(run)]) == 0  # the built-in digits
    saved = np.load(str(run / "evolution.npz"))
    units = {k: saved[k] for k in saved.files if k.endswith("_unit")}
    assert sorted({k.split("_")[1] for k in units}) == LAYERS and len(units) == 5 * 4 * 2
    assert max(int(u[0]) for u in units.values()) < 100  # --evolution-images 100: the first 100 training images
    assert max(int(u[0]) for u in units.values()) >= 16  # more than the old 16 validation images
    assert (run / "evolution.png").exists()
