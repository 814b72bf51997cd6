"""kzoo.load and kzoo.preprocessing: a trained model brings its preprocessing, mean and
class names; its views equal the training pipeline's validation views."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo import preprocessing
from kzoo.data.sources import builtin_digits
from kzoo.data.transforms import eval_map
from kzoo.preprocessing import Preprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("shape,out", [((375, 500), (256, 341)), ((100, 37), (23, 80)), ((8, 8), (32, 32)),
                                       ((64, 48), (7, 5)), ((227, 300), (256, 338)), ((13, 17), (13, 40))])
def test_resize_equals_tensorflows_antialiased_bilinear(shape, out):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3)).astype(np.float32)
    reference = tf.image.resize(image, out, method="bilinear", antialias=True).numpy()
    np.testing.assert_allclose(preprocessing.resize(image, *out), reference, atol=2e-4)


def test_resized_shape_rounds_as_the_training_pipeline():
    for h, w, shorter in [(375, 500, 256), (500, 375, 256), (333, 500, 224), (8, 8, 32), (481, 640, 231),
                          (97, 129, 77)]:
        shape = tf.constant([h, w], tf.float32)
        expected = tf.cast(tf.round(shape * (shorter / tf.reduce_min(shape))), tf.int32).numpy()
        assert preprocessing.resized_shape(h, w, shorter) == tuple(expected)
    assert preprocessing.resized_shape(375, 500, 256) == (256, 341)


@pytest.mark.parametrize("p", [
    Preprocess(resize=77, center=77, crop=67, mean="pixel"),  # AlexNet's pipeline at 67 px
    Preprocess(resize=(40, 60), crop=36, mean="channel"),  # ResNet's: the low end, no square
    Preprocess(resize=48, crop=40, mean="channel", color="BGR", scale=0.5),
])
def test_centre_views_equal_the_training_pipelines_validation_views(p):
    rng = np.random.default_rng(1)
    mean = rng.uniform(0, 255, (77, 77, 3) if p.pixel_mean else (3,)).astype(np.float32)
    for shape in [(90, 120, 3), (77, 77, 3), (200, 81, 3)]:
        image = rng.integers(0, 256, shape).astype(np.uint8)
        reference = eval_map(p, {"mean": mean})(tf.constant(image), 0)[0].numpy()
        view = preprocessing.center_view(image, p, mean)
        # Both quantize the resize to 8 bits; where it lands within float rounding of a half
        # (TF and numpy sum in other orders) one may round up and the other down: one level.
        unrounded = preprocessing.resize_shorter(image, p.eval_resize)
        if p.center:
            unrounded = preprocessing.center_crop(unrounded, p.center)
        unrounded = preprocessing.center_crop(unrounded, p.crop)[..., ::-1 if p.color == "BGR" else 1]
        tie = np.abs(unrounded - np.floor(unrounded) - 0.5) < 1e-3
        if min(shape[:2]) == p.eval_resize:
            tie[:] = False  # not resized: nothing rounded
        np.testing.assert_allclose(view[~tie], reference[~tie], atol=2e-3)
        assert np.all(np.isclose(np.abs(view - reference)[tie], [[0], [p.scale]], atol=2e-3).any(0))
        assert tie.mean() < 0.01  # a few pixels


def test_ten_views_are_corners_centre_and_flips():
    p = Preprocess(resize=10, crop=6, mean="channel")
    image = np.arange(10 * 14 * 3, dtype=np.float32).reshape(10, 14, 3)
    views = preprocessing.ten_views(image, p, np.zeros(3))
    base = preprocessing.resize_shorter(image, 10)  # 10x14 stays 10x14
    np.testing.assert_allclose(base, image, atol=1e-4)
    assert views.shape == (10, 6, 6, 3)
    np.testing.assert_allclose(views[0], image[:6, :6], atol=1e-4)
    np.testing.assert_allclose(views[3], image[4:, 8:], atol=1e-4)
    np.testing.assert_allclose(views[4], image[2:8, 4:10], atol=1e-4)
    np.testing.assert_allclose(views[9], image[2:8, 4:10][:, ::-1], atol=1e-4)


def test_preprocess_record_round_trips_and_rejects_foreign_records():
    p = Preprocess(resize=(256, 480), crop=224, pca=0.1, mean="channel")
    record = json.loads(json.dumps(p.to_dict()))
    assert record["resize"] == [256, 480] and Preprocess.from_dict(record) == p
    with pytest.raises(ValueError, match="not a kzoo Preprocess record"):
        Preprocess.from_dict({"resize_shorter": 256, "crop": 224})
    with pytest.raises(ValueError, match="mean must be 'pixel' or 'channel'"):
        Preprocess(resize=256, crop=224, mean="image")


@pytest.fixture(scope="module")
def digits():
    source = builtin_digits()
    pairs = list(source.val)
    return np.stack([p[0].numpy() for p in pairs]), np.array([int(p[1]) for p in pairs])


def test_registered_weights_bring_preprocessing_mean_and_names(digits):
    images, labels = digits
    trained = kzoo.load("resnet20", weights="digits")
    assert trained.preprocessing == Preprocess(resize=32, center=32, crop=32, pad=4, mean="pixel")
    assert trained.mean.shape == (32, 32, 3) and trained.class_names == [str(i) for i in range(10)]
    probabilities = trained.predict(images)
    error = 100 * np.mean(probabilities.argmax(1) != labels)
    assert abs(error - 21.17) <= 100 / 359  # the manifest's measured error, within one image
    top = trained.decode(probabilities[:2], top=3)
    assert [len(row) for row in top] == [3, 3]
    for row, probs in zip(top, probabilities[:2]):
        assert [i for i, _, _ in row] == list(np.argsort(-probs)[:3])
        assert row[0][1] == str(row[0][0]) and row[0][2] == pytest.approx(probs.max())
    assert kzoo.decode_predictions(probabilities[:2], "resnet20", "digits", top=3) == top
    first = top[0][0]  # a plain tuple, exact, printed rounded for a reader
    assert first == (first[0], first[1], float(probabilities[0].max())) and isinstance(first, tuple)
    assert repr(first) == f"({first[0]}, {first[1]!r}, {float(probabilities[0].max()):.4f})"
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(top)) == top and copy.deepcopy(first) == first  # as plain tuples would
    resized = [np.clip(np.round(preprocessing.resize_shorter(im, 32)), 0, 255) for im in images[:4]]  # 8 bits
    batch = np.stack([preprocessing.center_crop(im, 32) for im in resized])
    np.testing.assert_allclose(kzoo.preprocess_input(batch, "resnet20", "digits"), trained.preprocess(images[:4]),
                               atol=1e-4)


def test_imagenet_class_names_come_from_tensorflow_datasets():
    names = kzoo.inference.registered_class_names("resnet50", "imagenet")
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "n01440764 tench, Tinca tinca"
    assert names[1] == "n01443537 goldfish, Carassius auratus"
    assert names[999] == "n15075141 toilet tissue, toilet paper, bathroom tissue"
    one_hot = np.eye(1000)[[1, 999]]
    assert kzoo.decode_predictions(one_hot, "resnet50", "imagenet", top=1) == [
        [(1, names[1], 1.0)], [(999, names[999], 1.0)]]


def test_paper_preprocessing_for_random_weights():
    from kzoo.registry import get_entry

    recipe_preprocessing = lambda name, size=None: get_entry(name).preprocess_at(size)  # noqa: E731
    assert recipe_preprocessing("overfeat_fast") == Preprocess(resize=256, crop=231, mean="channel")
    assert recipe_preprocessing("overfeat_accurate").crop == 221
    alexnet = recipe_preprocessing("alexnet")
    assert (alexnet.resize, alexnet.center, alexnet.crop, alexnet.mean) == (256, 256, 224, "pixel")
    assert recipe_preprocessing("resnet50").resize == (256, 480)
    small = recipe_preprocessing("alexnet", 67)
    assert (small.resize, small.center, small.crop) == (77, 77, 67)


def test_load_errors_name_the_problem(tmp_path):
    kzoo.resnet20().save_weights(str(tmp_path / "r20.weights.h5"))
    with pytest.raises(ValueError, match=r"does not say which mean.*mean=\(R, G, B\)"):
        kzoo.load("resnet20", weights=str(tmp_path / "r20.weights.h5"))
    trained = kzoo.load("resnet20", weights=str(tmp_path / "r20.weights.h5"), mean=(10, 20, 30))
    assert trained.mean.tolist() == [10, 20, 30] and trained.origin.startswith("file ")
    with pytest.raises(ValueError, match="neither a registered weights name .* nor an existing file"):
        kzoo.load("resnet20", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match="bring their own mean"):
        kzoo.load("resnet20", weights="digits", mean=(1, 2, 3))
    with pytest.raises(ValueError, match="takes everything from the run; drop name"):
        kzoo.load("resnet20", run_dir=str(tmp_path))
    with pytest.raises(ValueError, match="takes everything from the run; drop mean"):
        kzoo.load(run_dir=str(tmp_path), mean=np.zeros(3))
    with pytest.raises(ValueError, match="load gives a classifier"):
        kzoo.load("resnet20", include_top=False)
    with pytest.raises(FileNotFoundError, match="not a kzoo run directory"):
        kzoo.load(run_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="2 class names for a model with 10 classes"):
        kzoo.load("resnet20", class_names=["a", "b"], classes=10)
    with pytest.raises(ValueError, match="Unknown model name 'resnet21'"):
        kzoo.load("resnet21")


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return str(trained_run("resnet_cifar", "--smoke")[0])


def test_a_run_names_its_statistics_and_is_loaded_with_them(run_dir, digits):
    from kzoo.train.engine import TrainConfig, validation_images

    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["stats"].startswith("stats-") and config["stats"].endswith(".npz")
    assert config["dataset"]["class_names"] == [str(i) for i in range(10)]
    trained = kzoo.load(run_dir=run_dir)
    with np.load(os.path.join(run_dir, config["stats"])) as stats:
        np.testing.assert_array_equal(trained.mean, stats["mean"])
    assert trained.name == "resnet20" and trained.dataset == "digits" and trained.class_names[3] == "3"
    # Exactly the views the run validated with (the engine's own tf.data validation map).
    fields = {k: v for k, v in config["config"].items() if k in TrainConfig.__dataclass_fields__}
    fields.update(preprocess=trained.preprocessing, schedule=None)
    reference = validation_images(TrainConfig(**fields), builtin_digits(), 8)
    np.testing.assert_allclose(trained.preprocess(digits[0][:8]), reference, atol=1e-4)


def test_other_npz_files_never_pass_for_the_statistics(run_dir, tmp_path):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    np.savez(os.path.join(copy, "evolution.npz"), projections=np.ones(3))  # what --evolution writes
    config = json.load(open(os.path.join(copy, "config.json")))
    mean = kzoo.load(run_dir=copy).mean
    assert mean.shape == (32, 32, 3)
    del config["stats"]  # a run made before config.json named its statistics
    json.dump(config, open(os.path.join(copy, "config.json"), "w"))
    np.testing.assert_array_equal(kzoo.load(run_dir=copy).mean, mean)
    os.remove(os.path.join(copy, [n for n in os.listdir(copy) if n.startswith("stats-")][0]))
    with pytest.raises(FileNotFoundError, match="no stats-\\*.npz files"):
        kzoo.load(run_dir=copy)


def test_a_missing_statistics_file_is_an_error_not_a_zero_mean(run_dir, tmp_path):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    name = json.load(open(os.path.join(copy, "config.json")))["stats"]
    os.remove(os.path.join(copy, name))
    with pytest.raises(FileNotFoundError, match=f"statistics file '{name}'.*is missing"):
        kzoo.load(run_dir=copy)


def test_predict_command_prints_the_top_classes_of_image_files(tmp_path, digits):
    from PIL import Image

    images, labels = digits
    for i in range(12):
        Image.fromarray(images[i]).save(tmp_path / f"img{i:02d}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "kzoo.predict"]
    bad = subprocess.Popen([*command, str(tmp_path / "notes.txt"), "--model", "resnet20", "--weights", "digits"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # beside the good one
    out = subprocess.run([*command, str(tmp_path), "--model", "resnet20", "--weights", "digits", "--top", "2",
                          "--json", "--precision", "mixed_bfloat16"], capture_output=True, text=True, env=env,
                         timeout=300)
    bad_err = bad.communicate(timeout=300)[1]
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [os.path.basename(r["image"]) for r in rows] == [f"img{i:02d}.png" for i in range(12)]
    expected = kzoo.load("resnet20", weights="digits", dtype="mixed_bfloat16").predict(images[:12])
    assert [r["top"][0]["index"] for r in rows] == list(expected.argmax(1))
    # the probabilities are bfloat16's, not float32's: --precision reached the model
    second = np.array([[r["top"][1]["index"], r["top"][1]["probability"]] for r in rows])
    in32 = kzoo.load("resnet20", weights="digits").predict(images[:12])
    picked = second[:, 0].astype(int), np.arange(12)
    np.testing.assert_allclose(second[:, 1], expected[picked[1], picked[0]], rtol=1e-5, atol=1e-7)
    assert np.abs(second[:, 1] - in32[picked[1], picked[0]]).max() > 1e-4
    assert all(len(r["top"]) == 2 and r["top"][0]["name"] == str(r["top"][0]["index"]) for r in rows)
    assert np.mean([r["top"][0]["index"] == label for r, label in zip(rows, labels)]) >= 0.6
    assert bad.returncode == 2 and "notes.txt' is not a JPEG, PNG, BMP or GIF image" in bad_err


def test_export_carries_the_preprocessing(tmp_path, digits):
    trained = kzoo.load("resnet20", weights="digits")
    path = trained.export(str(tmp_path / "saved"))
    images = np.stack([np.asarray(tf.image.resize(im, (40, 40), antialias=True)).round().astype(np.uint8)
                       for im in digits[0][:5]])
    reloaded = tf.saved_model.load(path)  # kept: its functions reference its variables
    served = reloaded.serve(tf.constant(images)).numpy()
    # The reference is kzoo's numpy preprocessing (not the TensorFlow map the SavedModel carries)
    # and the model: its views may differ by one 8-bit level where a resize rounds a near-half
    # (test_centre_views_equal_the_training_pipelines_validation_views), so the bound is what one
    # level at every pixel moves the outputs, far below what a wrong mean or crop would.
    views = trained.preprocess(images)
    reference = trained.model.predict(views, verbose=0)
    level = max(np.abs(trained.model.predict(views + sign * trained.preprocessing.scale, verbose=0) - reference).max()
                for sign in (-1, 1))
    assert 0 < level < 0.05
    np.testing.assert_allclose(served, reference, atol=level)
    np.testing.assert_array_equal(served.argmax(1), reference.argmax(1))
    shifted = trained.model.predict(trained.preprocess(np.clip(images + 16.0, 0, 255)), verbose=0)  # a wrong mean
    assert np.abs(shifted - reference).max() > 10 * level
    with pytest.raises(ValueError, match="exists; kzoo does not overwrite it"):
        trained.export(path)


def test_the_python_api_refuses_what_the_commands_refuse():
    """Arrays that are not 8-bit pictures, a NaN mean, a `top` that is not a count and a batch
    at another size than the mean image are refused with the argument and what is accepted;
    a single greyscale image is one image (not a batch of its rows)."""
    trained = kzoo.load("resnet20", weights="digits")
    for bad, message in [
        (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite values"),
        (np.full((8, 8, 3), -5.0), r"pixel values must lie in 0-255 \(8-bit RGB\); this image's run from -5 to -5\."),
        (np.full((8, 8, 3), 4000, np.uint16), r"from 4000 to 4000 \(a 16-bit image\? divide it by 257\)"),
        (np.ones((8, 8, 3), bool), "got an array of bool values"),
        (np.ones((8, 8, 3), complex), "got an array of complex128 values"),
    ]:
        with pytest.raises(ValueError, match=message):
            trained.predict(bad)
    grey = np.random.default_rng(0).integers(0, 256, (8, 8)).astype(np.uint8)
    assert trained.predict(grey).shape == (1, 10)
    np.testing.assert_array_equal(trained.predict(grey), trained.predict(np.repeat(grey[..., None], 3, axis=-1)))
    probabilities = trained.predict(grey)
    for top in (-1, 0, 2.9, True, "3"):
        with pytest.raises(ValueError, match=r"top must be a positive integer .*; got " + re.escape(repr(top))):
            trained.decode(probabilities, top=top)
    assert len(trained.decode(probabilities, top=50)[0]) == 10 and len(trained.decode(probabilities, top=np.int64(2))[0]) == 2
    for mean, message in [((np.nan, 0, 0), "from 0 to 0 and NaN"), ((300, 0, 0), "from 0 to 300"),
                          ("grey", "mean must be a colour")]:
        with pytest.raises(ValueError, match=message):
            kzoo.load("resnet20", mean=mean)
    with pytest.raises(ValueError, match=r"resnet20/digits subtracts a 32x32 mean image, but the batch is 40x40: "):
        kzoo.preprocess_input(np.zeros((1, 40, 40, 3)), "resnet20", "digits")


def test_a_trained_model_says_what_it_is_in_one_line():
    trained = kzoo.load("resnet20", weights="digits")
    assert repr(trained) == ("TrainedModel(resnet20, 10 classes, input 32 px, weights digits, trained on scikit-learn's "
                             "handwritten digits, the built-in demo data (1,438 training images, 10 classes; light "
                             "strokes on a black background, 8x8 px))")
    assert repr(kzoo.load("resnet20")) == ("TrainedModel(resnet20, 10 classes, input 32 px, random weights, trained on "
                                           "nothing (random weights))")


def test_the_predict_table_says_what_the_model_was_trained_on(tmp_path, digits, capsys):
    from PIL import Image

    from kzoo.predict import main

    Image.fromarray(digits[0][0]).save(tmp_path / "d.png")
    assert main([str(tmp_path / "d.png"), "--model", "resnet20", "--weights", "digits", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("resnet20 (weights digits), trained on scikit-learn's handwritten digits")
    assert "light strokes on a black background" in lines[0]
    assert lines[1:3] == [str(tmp_path / "d.png"), "  probability  class"]
    expected = kzoo.load("resnet20", weights="digits").decode(kzoo.load("resnet20", weights="digits").predict(
        digits[0][:1]), top=2)[0]
    assert [line.split() for line in lines[3:]] == [[f"{p:.2%}", name] for _, name, p in expected]


def test_the_readmes_drawn_seven_reads_as_seven_once_inverted():
    """A 7 drawn dark on white, bold and filling the frame: the digits weights read its negative
    (their own look) as 7, and the drawing itself as something else (README)."""
    from PIL import Image, ImageDraw

    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).line([(10, 10), (54, 10), (26, 58)], fill="black", width=12)
    drawn = np.asarray(drawing)
    model = kzoo.load("resnet20", weights="digits")
    assert model.decode(model.predict(255 - drawn), top=1)[0][0][1] == "7"
    assert model.decode(model.predict(drawn), top=1)[0][0][1] != "7"
