"""Evaluation protocols: views, fully convolutional conversion, OverFeat dense evaluation."""

import json

import keras
import numpy as np
import pytest

import kzoo
from kzoo.evaluate import (TABLE5_SCALES, center_crop, dense_model, dense_scores, fully_convolutional,
                           predict_views, ten_crops)




@pytest.fixture(scope="module")
def overfeat():
    """OverFeat fast or accurate at its paper's size, 10 classes, logits (145M weights): the
    last one built is kept for the next test (one at a time: 580 MB each), and the tests that
    use them follow each other so that each is built twice, not six times."""
    cache = {}

    def get(name):
        if name not in cache:
            cache.clear()
            keras.utils.set_random_seed(0)
            cache[name] = kzoo.create_model(name, classes=10, classifier_activation=None)
        return cache[name]

    return get


@pytest.fixture
def rng():
    """Each test's own draws: its inputs do not depend on which tests ran before it."""
    return np.random.default_rng(0)

def test_ten_crops_are_corners_centre_and_flips(rng):
    images = rng.normal(size=(2, 9, 11, 3)).astype("float32")
    crops = ten_crops(images, 5)
    assert crops.shape == (2, 10, 5, 5, 3)
    expected = [images[:, :5, :5], images[:, :5, 6:], images[:, 4:, :5], images[:, 4:, 6:], images[:, 2:7, 3:8]]
    for i, crop in enumerate(expected):
        np.testing.assert_array_equal(crops[:, i], crop)
        np.testing.assert_array_equal(crops[:, 5 + i], crop[:, :, ::-1])
    np.testing.assert_array_equal(center_crop(images, 5), expected[4])
    with pytest.raises(ValueError, match="smaller than the network's 12x12 window"):
        ten_crops(images, 12)


def test_predict_views_averages_the_softmax(rng):
    model = kzoo.resnet20()
    images = rng.normal(size=(3, 40, 40, 3)).astype("float32")
    crops = ten_crops(images, 32)
    manual = model.predict(crops.reshape(-1, 32, 32, 3), verbose=0).reshape(3, 10, 10).mean(1)
    np.testing.assert_allclose(predict_views(model, images, "10crop"), manual, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(predict_views(model, images, "center"),
                               model.predict(center_crop(images, 32), verbose=0), rtol=1e-5)
    with pytest.raises(ValueError, match="'center' or '10crop'"):
        predict_views(model, images, "5crop")


@pytest.mark.parametrize("name", ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18"])
def test_fully_convolutional_keeps_the_outputs(name, rng, overfeat):
    model = overfeat(name) if name.startswith("overfeat") else kzoo.create_model(name, classes=10,
                                                                                  classifier_activation=None)
    size = model.inputs[0].shape[1]
    fcn = fully_convolutional(model)
    x = rng.normal(size=(2, size, size, 3)).astype("float32") * 50
    scores = np.asarray(fcn(x))
    reference = np.asarray(model(x))
    # One window at the training size; a ResNet's fc commutes with its global average.
    # float32 sums of ~1e4-sized terms: the tolerance scales with the outputs (as the dense test's)
    np.testing.assert_allclose(scores.mean(axis=(1, 2)), reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    bigger = np.asarray(fcn(rng.normal(size=(1, size + 72, size + 36, 3)).astype("float32")))
    assert bigger.shape[1] > 1 and bigger.shape[2] > 1


def _tail(model, flatten):
    """The original model's last pooling and classifier, on a pre-pool window."""
    pool = model.layers[flatten - 1]
    inputs = keras.Input(pool.input.shape[1:])
    x = inputs
    for layer in model.layers[flatten - 1 :]:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("name, scales", [("overfeat_accurate", [(245, 245), (281, 317)]),
                                          ("overfeat_fast", [(263, 263), (295, 327)])])
def test_dense_map_equals_the_classifier_on_every_window(name, scales, rng, overfeat):
    model = overfeat(name)
    names = [layer.name for layer in model.layers]
    flatten = names.index("flatten")
    window = model.layers[flatten - 1].input.shape[1]  # the pre-pool map at the training size
    stride = model.layers[flatten - 1].pool_size[0]
    dense = dense_model(model)
    features = keras.Model(dense.input, dense.get_layer("offset_pool").input)
    tail = _tail(model, flatten)
    for h, w in scales:
        x = rng.normal(size=(1, h, w, 3)).astype("float32") * 50
        scores, pre = np.asarray(dense(x)), np.asarray(features(x))
        rows, cols = scores.shape[1:3]
        # s offsets x the windows each offset's pooled map holds (Table 5's arithmetic).
        expected = [stride * ((n - stride + 1) // stride - window // stride + 1) for n in pre.shape[1:3]]
        assert [rows, cols] == expected
        windows = np.stack([pre[0, i : i + window, j : j + window] for i in range(rows) for j in range(cols)])
        reference = np.asarray(tail(windows)).reshape(rows, cols, -1)
        np.testing.assert_allclose(scores[0], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_dense_scores_max_over_positions_then_mean(rng, overfeat):
    dense = dense_model(overfeat("overfeat_fast"))
    images = [rng.normal(size=(263, 263, 3)).astype("float32"), rng.normal(size=(263, 295, 3)).astype("float32")]
    manual = []
    for image in images:
        for view in (image, image[:, ::-1]):
            manual.append(np.asarray(dense(view[None]))[0].reshape(-1, 10).max(0))
    reference = np.mean(manual, 0)  # one view at a time; dense_scores runs a view and its flip together
    np.testing.assert_allclose(dense_scores(dense, images), reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
    with pytest.raises(ValueError, match="231x231 image is too small for dense evaluation"):
        dense_scores(dense, [np.zeros((231, 231, 3), "float32")])


def test_table5_map_sizes_exactly(overfeat):
    dense = dense_model(overfeat("overfeat_accurate"))  # it copies the classifier's weights
    pre_pool = keras.Model(dense.input, [dense.get_layer("offset_pool").input, dense.get_layer("offset_pool").output,
                                         dense.get_layer("interleave").input, dense.output])
    table5 = [((17, 17), (5, 5), (1, 1), (3, 3)), ((20, 23), (6, 7), (2, 3), (6, 9)),
              ((23, 29), (7, 9), (3, 5), (9, 15)), ((29, 35), (9, 11), (5, 7), (15, 21)),
              ((32, 38), (10, 12), (6, 8), (18, 24)), ((35, 44), (11, 14), (7, 10), (21, 30))]
    for (h, w), expected in zip(TABLE5_SCALES, table5, strict=True):
        # Keras' shape inference on a symbolic image, layer by layer: no convolution runs
        # (test_dense_map_equals_the_classifier_on_every_window runs the layers for real).
        maps = pre_pool.compute_output_spec(keras.KerasTensor((1, h, w, 3)))
        assert [tuple(m.shape[1:3]) for m in maps] == list(expected), (h, w)
        assert maps[1].shape[0] == maps[2].shape[0] == 9  # the 3x3 offsets, stacked


def test_clear_errors_for_models_without_the_expected_layers(symbolic):
    with pytest.raises(ValueError, match="non-overlapping last max-pooling.*pool5"):
        dense_model(symbolic(kzoo.alexnet, classes=10))
    with pytest.raises(ValueError, match="'flatten' layer"):
        dense_model(symbolic(kzoo.resnet18, classes=10))
    inputs = keras.Input((8, 8, 3))
    odd = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalMaxPooling2D()(inputs)), name="odd")
    with pytest.raises(ValueError, match="'flatten' layer.*odd"):
        fully_convolutional(odd)


def test_resnet_multiscale_averages_positions_and_scales(rng):
    from kzoo.evaluate import multiscale_probabilities
    from kzoo.evaluate.fcn import resize_shorter

    model = kzoo.resnet18(classes=5)
    fcn = fully_convolutional(model)
    image = rng.normal(size=(40, 60, 3)).astype("float32")
    probs = multiscale_probabilities(fcn, [image], sizes=(32, 48))
    manual = []
    for size in (32, 48):
        view = resize_shorter(image, size)
        assert min(view.shape[:2]) == size
        manual.append(np.asarray(fcn(view[None]))[0].reshape(-1, 5).mean(0))
    np.testing.assert_allclose(probs[0], np.mean(manual, 0), rtol=1e-5)
    assert probs.shape == (1, 5)


def test_cli_center_view_reproduces_the_training_validation(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate_main
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import main as recipe_main

    run_dir = str(tmp_path / "run")
    # one epoch at 16 px: a net that has learned something (val error below chance), so a
    # wrong view, mean or crop would change its errors
    assert recipe_main(resnet_cifar.RECIPE, ["--epochs", "1", "--batch-size", "64", "--input-size", "16",
                                             "--run-dir", run_dir]) == 0
    trained = json.load(open(tmp_path / "run" / "metrics.json"))
    assert trained["val_top1_err"] < 0.85  # measured 0.76; chance 0.9
    capsys.readouterr()
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "center"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 359
    assert result["top1_err"] == pytest.approx(trained["val_top1_err"], abs=1 / 359)
    assert result["top5_err"] == pytest.approx(trained["val_top5_err"], abs=1 / 359)
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "10crop", "--limit", "20"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 20


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
    crop = json.load(open(tmp_path / "run" / "config.json"))["identity"]["crop"]
    assert crop == 80  # the demo's input: fast's window is one pooled unit there, as at 71
    assert result["view_sizes"][::2] == [[87, 87], [119, 151], [151, 215], [215, 279], [247, 311], [279, 375]]
    assert evaluate_main(["--run-dir", run_dir, "--protocol", "dense-single", "--limit", "3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["protocol"] == "dense-single" and result["view_sizes"] == [[87, 87], [87, 87]]
    with pytest.raises(SystemExit):
        evaluate_main(["--run-dir", str(tmp_path / "missing")])
    assert "not a kzoo run directory" in capsys.readouterr().err


# OverFeat accurate: Table 5's inputs and layer-5 pre-pool maps; OverFeat fast (window 6,
# pool 2 s2): the same classifier maps, its own inputs (derived by hand from Table 1).
ACCURATE_SIZES = [(245, 245), (281, 317), (317, 389), (389, 461), (425, 497), (461, 569)]
ACCURATE_PRE_POOL = [(17, 17), (20, 23), (23, 29), (29, 35), (32, 38), (35, 44)]
FAST_SIZES = [(247, 247), (279, 311), (311, 375), (375, 439), (407, 471), (439, 535)]
FAST_PRE_POOL = [(13, 13), (15, 17), (17, 21), (21, 25), (23, 27), (25, 31)]
CLASSIFIER_MAPS = [(1, 1), (2, 3), (3, 5), (5, 7), (6, 8), (7, 10)]  # Table 5, per offset


def _offset_maps(model, height, width):
    """Keras' own shape inference (a symbolic input, nothing computed): the pre-pool map at
    an input of height x width and the classifier map each offset of the last pooling gives."""
    from kzoo.evaluate.fcn import apply_chain, feature_chain

    flatten = [layer.name for layer in model.layers].index("flatten")
    pool = model.layers[flatten - 1]
    window = model.layers[flatten].input.shape[1:3]
    pre = apply_chain(feature_chain(model, flatten - 1), keras.Input((height, width, 3))).shape
    maps = set()
    for dy in range(pool.pool_size[0]):
        for dx in range(pool.pool_size[1]):
            try:
                pooled = pool.compute_output_shape((None, pre[1] - dy, pre[2] - dx, pre[3]))
            except ValueError:  # Keras: "output size would be zero or negative"
                maps.add(None)
                continue
            maps.add((pooled[1] - window[0] + 1, pooled[2] - window[1] + 1))
    return tuple(pre[1:3]), maps


def _check_every_offset(model, sizes, maps=CLASSIFIER_MAPS):
    """Each size gives its classifier map at every offset, and one row or column less does not
    (the smallest such input: no layer drops a pixel). Returns the pre-pool maps."""
    pre_pool = []
    for (h, w), expected in zip(sizes, maps, strict=True):
        pre, per_offset = _offset_maps(model, h, w)
        assert per_offset == {expected}, ((h, w), per_offset)
        for smaller in ((h - 1, w), (h, w - 1)):
            assert _offset_maps(model, *smaller)[1] != {expected}, smaller
        pre_pool.append(pre)
    return pre_pool


@pytest.fixture(scope="module")
def accurate(symbolic):
    return symbolic(kzoo.overfeat_accurate, classes=10)  # shapes only: 580 MB less for the module


def test_dense_input_sizes_are_table5s(accurate, symbolic):
    from kzoo.evaluate import dense_input_sizes

    assert dense_input_sizes(accurate) == ACCURATE_SIZES == list(TABLE5_SCALES)
    assert _check_every_offset(accurate, ACCURATE_SIZES) == ACCURATE_PRE_POOL
    fast = symbolic(kzoo.overfeat_fast, classes=10)
    assert dense_input_sizes(fast) == FAST_SIZES
    assert _check_every_offset(fast, FAST_SIZES) == FAST_PRE_POOL


@pytest.mark.parametrize("name, sizes", [
    ("overfeat_fast", [(87, 87), (119, 151), (151, 215), (215, 279), (247, 311), (279, 375)]),
    ("overfeat_accurate", [(101, 101), (137, 173), (173, 245), (245, 317), (281, 353), (317, 425)])])
def test_dense_input_sizes_of_a_reduced_model(name, sizes, symbolic):
    from kzoo.evaluate import dense_input_sizes

    smallest = kzoo.registry.get_entry(name).min_size
    model = symbolic(kzoo.create_model, name, input_shape=(smallest, smallest, 3), classes=10)
    assert model.get_layer("flatten").input.shape[1:3] == (1, 1)  # the classifier window is one pooled unit
    assert dense_input_sizes(model) == sizes
    _check_every_offset(model, sizes)


def test_view_sizes_of_every_protocol(accurate, symbolic):
    from kzoo.evaluate import PROTOCOLS, view_sizes

    assert PROTOCOLS == ("center", "10crop", "dense", "dense-single", "multiscale")
    assert view_sizes(accurate, "center") == [(221, 221)]
    assert view_sizes(accurate, "10crop") == [(221, 221)] * 10
    assert view_sizes(accurate, "dense") == [
        (245, 245), (245, 245), (281, 317), (281, 317), (317, 389), (317, 389),
        (389, 461), (389, 461), (425, 497), (425, 497), (461, 569), (461, 569)]  # each scale and its flip
    assert view_sizes(accurate, "dense-single") == [(245, 245), (245, 245)]
    resnet = symbolic(kzoo.resnet18, classes=10)
    assert view_sizes(resnet, "center") == [(224, 224)]
    assert view_sizes(resnet, "multiscale") == [(224, 224), (256, 256), (384, 384), (480, 480), (640, 640)]
    assert view_sizes(resnet, "multiscale", (375, 500, 3)) == [
        (224, 299), (256, 341), (384, 512), (480, 640), (640, 853)]
    assert view_sizes(resnet, "multiscale", (500, 375, 3)) == [
        (299, 224), (341, 256), (512, 384), (640, 480), (853, 640)]
    assert view_sizes(symbolic(kzoo.resnet20), "multiscale") == [(32, 32), (37, 37), (55, 55), (69, 69), (91, 91)]
    with pytest.raises(ValueError, match="unknown protocol '5crop'"):
        view_sizes(resnet, "5crop")
    with pytest.raises(ValueError, match="non-overlapping last max-pooling"):
        view_sizes(symbolic(kzoo.alexnet, input_shape=(64, 64, 3), classes=10), "dense")


def test_cover_crop_keeps_the_aspect_and_takes_the_centre(rng):
    from kzoo.evaluate.fcn import cover_crop

    image = rng.uniform(0, 255, size=(100, 50, 3)).astype("float32")
    # 100x50 already covers 60x50: no resize, the centre 60 rows.
    np.testing.assert_allclose(cover_crop(image, 60, 50), image[20:80], atol=1e-3)
    # Halved to 50x25 to cover 30x25, then the centre 30 rows; a column-constant image stays one.
    columns = np.broadcast_to(np.linspace(0, 255, 50, dtype="float32")[None, :, None], (100, 50, 3))
    view = cover_crop(np.ascontiguousarray(columns), 30, 25)
    assert view.shape == (30, 25, 3)
    np.testing.assert_allclose(view, np.broadcast_to(view[:1], view.shape), atol=1e-3)
    assert cover_crop(image, 245, 245).shape == (245, 245, 3)  # smaller images are enlarged


def test_evaluate_uses_and_records_the_views_of_each_protocol(rng):
    from kzoo.evaluate.fcn import cover_crop, resize
    from kzoo.evaluate.views import evaluate, protocol_scores

    trained = kzoo.load("overfeat_fast", input_shape=(71, 71, 3), classes=10, mean=(120, 120, 120))
    model = trained.model
    images = rng.integers(0, 256, size=(2, 60, 80, 3), dtype=np.uint8)
    mean = np.full(3, 120, np.float32)
    result = evaluate(trained, images, np.array([1, 2]), "dense-single")
    assert result["view_sizes"] == [[87, 87], [87, 87]] and "scale 1" in result["views"]
    assert result["images"] == 2
    # The scores come from those views: an 87x87 centre of each image (covering, aspect kept), and its flip.
    dense = dense_model(model)
    reference = [dense_scores(dense, [cover_crop(image.astype("float32") - mean, 87, 87)]) for image in images]
    np.testing.assert_allclose(protocol_scores(trained, images, "dense-single"), reference, rtol=1e-5)
    result = evaluate(trained, images, np.array([1, 2]), "dense", limit=1)
    assert result["view_sizes"] == [list(hw) for hw in (
        (87, 87), (87, 87), (119, 151), (119, 151), (151, 215), (151, 215),
        (215, 279), (215, 279), (247, 311), (247, 311), (279, 375), (279, 375))]
    assert result["images"] == 1
    # Multiscale: each image whole, at shorter sides 32 ... 91 (ResNet's, for a 32 px input).
    resnet = kzoo.load("resnet20", mean=(120, 120, 120))
    fcn = fully_convolutional(resnet.model)
    reference = []
    for image in images:
        view = image.astype("float32") - mean
        per_scale = [np.asarray(fcn(resize(view, *hw)[None]))[0].reshape(-1, 10).mean(0)
                     for hw in ((32, 43), (37, 49), (55, 73), (69, 92), (91, 121))]
        reference.append(np.mean(per_scale, axis=0))
    # (views of one shape run as one batch: float differences of ~1e-25 on probabilities of ~1e-23)
    np.testing.assert_allclose(protocol_scores(resnet, images, "multiscale"), reference, rtol=1e-5, atol=1e-9)


def test_cli_json_refuses_a_path_before_evaluating(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate_main

    existing = tmp_path / "result.json"
    existing.write_text("mine")
    for path, message in ((existing, "already exists; pass --overwrite"), (tmp_path, "is a directory"),
                          (tmp_path / "missing" / "r.json", "does not exist")):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_main(["--model", "resnet20", "--weights", "none", "--json", str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"error: --json {str(path)!r}" in err and message in err, err
    assert existing.read_text() == "mine"


def test_cli_writes_the_result_with_its_view_sizes(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate_main

    path = tmp_path / "result.json"
    args = ["--model", "resnet20", "--weights", "none", "--protocol", "multiscale", "--limit", "2"]
    assert evaluate_main([*args, "--json", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads(path.read_text()) == printed
    assert printed["view_sizes"] == [[32, 32], [37, 37], [55, 55], [69, 69], [91, 91]]
    assert printed["protocol"] == "multiscale" and printed["images"] == 2
    assert evaluate_main([*args, "--json", str(path), "--overwrite"]) == 0
    assert json.loads(path.read_text())["images"] == 2


def test_protocol_scores_of_no_images_is_an_error():
    from kzoo.evaluate.views import protocol_scores

    with pytest.raises(ValueError, match="no images to evaluate"):
        protocol_scores(kzoo.load("resnet20", mean=(0, 0, 0)), iter([]), "center")
