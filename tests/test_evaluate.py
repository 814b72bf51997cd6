"""Evaluation protocols: views, fully convolutional conversion, OverFeat dense evaluation."""

import json

import keras
import numpy as np
import pytest

import kzoo
from kzoo.evaluate import (TABLE5_SCALES, center_crop, dense_model, dense_scores, fully_convolutional,
                           predict_views, ten_crops)

RNG = np.random.default_rng(0)


def test_ten_crops_are_corners_centre_and_flips():
    images = RNG.normal(size=(2, 9, 11, 3)).astype("float32")
    crops = ten_crops(images, 5)
    assert crops.shape == (2, 10, 5, 5, 3)
    expected = [images[:, :5, :5], images[:, :5, 6:], images[:, 4:, :5], images[:, 4:, 6:], images[:, 2:7, 3:8]]
    for i, crop in enumerate(expected):
        np.testing.assert_array_equal(crops[:, i], crop)
        np.testing.assert_array_equal(crops[:, 5 + i], crop[:, :, ::-1])
    np.testing.assert_array_equal(center_crop(images, 5), expected[4])
    with pytest.raises(ValueError, match="smaller than the network's 12x12 window"):
        ten_crops(images, 12)


def test_predict_views_averages_the_softmax():
    model = kzoo.resnet20()
    images = RNG.normal(size=(3, 40, 40, 3)).astype("float32")
    crops = ten_crops(images, 32)
    manual = model.predict(crops.reshape(-1, 32, 32, 3), verbose=0).reshape(3, 10, 10).mean(1)
    np.testing.assert_allclose(predict_views(model, images, "10crop"), manual, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(predict_views(model, images, "center"),
                               model.predict(center_crop(images, 32), verbose=0), rtol=1e-5)
    with pytest.raises(ValueError, match="'center' or '10crop'"):
        predict_views(model, images, "5crop")


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18"])
def test_fully_convolutional_keeps_the_outputs(name):
    model = kzoo.create_model(name, classes=10, classifier_activation=None)
    size = model.inputs[0].shape[1]
    fcn = fully_convolutional(model)
    x = RNG.normal(size=(2, size, size, 3)).astype("float32") * 50
    scores = np.asarray(fcn(x))
    reference = np.asarray(model(x))
    # One window at the training size; a ResNet's fc commutes with its global average.
    np.testing.assert_allclose(scores.mean(axis=(1, 2)), reference, rtol=1e-4, atol=1e-4)
    bigger = np.asarray(fcn(RNG.normal(size=(1, size + 72, size + 36, 3)).astype("float32")))
    assert bigger.shape[1] > 1 and bigger.shape[2] > 1


def _tail(model, flatten):
    """The original model's last pooling and classifier, on a pre-pool window."""
    pool = model.layers[flatten - 1]
    inputs = keras.Input(pool.input.shape[1:])
    x = inputs
    for layer in model.layers[flatten - 1 :]:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.slow
@pytest.mark.parametrize("name, scales", [("overfeat_fast", [(263, 263), (295, 327)]),
                                          ("overfeat_accurate", [(245, 245), (281, 317)])])
def test_dense_map_equals_the_classifier_on_every_window(name, scales):
    model = kzoo.create_model(name, classes=10, classifier_activation=None)
    names = [layer.name for layer in model.layers]
    flatten = names.index("flatten")
    window = model.layers[flatten - 1].input.shape[1]  # the pre-pool map at the training size
    stride = model.layers[flatten - 1].pool_size[0]
    dense = dense_model(model)
    features = keras.Model(dense.inputs, dense.get_layer("offset_pool").input)
    tail = _tail(model, flatten)
    for h, w in scales:
        x = RNG.normal(size=(1, h, w, 3)).astype("float32") * 50
        scores, pre = np.asarray(dense(x)), np.asarray(features(x))
        rows, cols = scores.shape[1:3]
        # s offsets x the windows each offset's pooled map holds (Table 5's arithmetic).
        expected = [stride * ((n - stride + 1) // stride - window // stride + 1) for n in pre.shape[1:3]]
        assert [rows, cols] == expected
        windows = np.stack([pre[0, i : i + window, j : j + window] for i in range(rows) for j in range(cols)])
        reference = np.asarray(tail(windows)).reshape(rows, cols, -1)
        np.testing.assert_allclose(scores[0], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_table5_map_sizes_exactly():
    dense = dense_model(kzoo.overfeat_accurate(classes=10))
    pre_pool = keras.Model(dense.inputs, [dense.get_layer("offset_pool").input, dense.get_layer("offset_pool").output,
                                          dense.get_layer("interleave").input, dense.output])
    table5 = [((17, 17), (5, 5), (1, 1), (3, 3)), ((20, 23), (6, 7), (2, 3), (6, 9)),
              ((23, 29), (7, 9), (3, 5), (9, 15)), ((29, 35), (9, 11), (5, 7), (15, 21)),
              ((32, 38), (10, 12), (6, 8), (18, 24)), ((35, 44), (11, 14), (7, 10), (21, 30))]
    for (h, w), expected in zip(TABLE5_SCALES, table5):
        maps = pre_pool(np.zeros((1, h, w, 3), "float32"))
        assert [tuple(m.shape[1:3]) for m in maps] == list(expected), (h, w)
        assert maps[1].shape[0] == maps[2].shape[0] == 9  # the 3x3 offsets, stacked


def test_dense_scores_max_over_positions_then_mean():
    dense = dense_model(kzoo.overfeat_fast(classes=10, classifier_activation=None))
    images = [RNG.normal(size=(263, 263, 3)).astype("float32"), RNG.normal(size=(263, 295, 3)).astype("float32")]
    manual = []
    for image in images:
        for view in (image, image[:, ::-1]):
            manual.append(np.asarray(dense(view[None]))[0].reshape(-1, 10).max(0))
    np.testing.assert_allclose(dense_scores(dense, images), np.mean(manual, 0), rtol=1e-5)
    with pytest.raises(ValueError, match="231x231 image is too small for dense evaluation"):
        dense_scores(dense, [np.zeros((231, 231, 3), "float32")])


def test_clear_errors_for_models_without_the_expected_layers():
    with pytest.raises(ValueError, match="non-overlapping last max-pooling.*pool5"):
        dense_model(kzoo.alexnet(classes=10))
    with pytest.raises(ValueError, match="'flatten' layer"):
        dense_model(kzoo.resnet18(classes=10))
    inputs = keras.Input((8, 8, 3))
    odd = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(inputs)), name="odd")
    with pytest.raises(ValueError, match="'flatten' layer.*odd"):
        fully_convolutional(odd)


def test_resnet_multiscale_averages_positions_and_scales():
    from kzoo.evaluate import multiscale_probabilities
    from kzoo.evaluate.fcn import resize_shorter

    model = kzoo.resnet18(classes=5)
    fcn = fully_convolutional(model)
    image = RNG.normal(size=(40, 60, 3)).astype("float32")
    probs = multiscale_probabilities(fcn, [image], sizes=(32, 48))
    manual = []
    for size in (32, 48):
        view = resize_shorter(image, size)
        assert min(view.shape[:2]) == size
        manual.append(np.asarray(fcn(view[None]))[0].reshape(-1, 5).mean(0))
    np.testing.assert_allclose(probs[0], np.mean(manual, 0), rtol=1e-5)
    assert probs.shape == (1, 5) and probs.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.slow
def test_cli_center_view_reproduces_the_training_validation(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate_main
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import main as recipe_main

    run_dir = str(tmp_path / "run")
    assert recipe_main(resnet_cifar.RECIPE, ["--epochs", "1", "--batch-size", "64", "--run-dir", run_dir]) == 0
    trained = json.load(open(tmp_path / "run" / "metrics.json"))
    capsys.readouterr()
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "center"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 359
    assert result["top1_err"] == pytest.approx(trained["val_top1_err"], abs=1 / 359)
    assert result["top5_err"] == pytest.approx(trained["val_top5_err"], abs=1 / 359)
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "10crop", "--limit", "20"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 20


@pytest.mark.slow
def test_cli_dense_protocol_on_an_overfeat_run_and_clear_errors(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate_main
    from kzoo.recipes import overfeat
    from kzoo.recipes.common import main as recipe_main

    run_dir = str(tmp_path / "run")
    assert recipe_main(overfeat.RECIPE, ["--smoke", "--model", "fast", "--run-dir", run_dir]) == 0
    capsys.readouterr()
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "dense", "--limit", "3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["protocol"] == "dense" and result["images"] == 3 and 0 <= result["top1_err"] <= 1
    with pytest.raises(SystemExit):
        evaluate_main(["--run-dir", str(tmp_path / "missing")])
    assert "not a kzoo run directory" in capsys.readouterr().err
