"""ZFNet's transfer protocol on a generated Caltech-style folder of real JPEG files."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo.data.caltech import load_collection, mean_per_class_accuracy, protocol_folds
from kzoo.evaluate.transfer import per_layer_names, transfer_model
from kzoo.recipes.caltech import main

COUNTS = {"accordion": 70, "brain": 40, "camera": 20, "BACKGROUND_Google": 25}
COLOURS = {"accordion": (200, 40, 40), "brain": (40, 200, 40), "camera": (40, 40, 200),
           "BACKGROUND_Google": (120, 120, 120)}


@pytest.fixture(scope="module")
def caltech(tmp_path_factory):
    root = tmp_path_factory.mktemp("caltech")
    rng = np.random.default_rng(0)
    for name, count in COUNTS.items():
        folder = root / "101_ObjectCategories" / name
        folder.mkdir(parents=True)
        for i in range(count):
            h, w = rng.integers(30, 60, 2)
            image = np.clip(rng.normal(COLOURS[name], 30, (h, w, 3)), 0, 255).astype("uint8")
            tf.io.write_file(str(folder / f"image_{i:04d}.jpg"), tf.io.encode_jpeg(image))
    return root


def test_collection_reads_the_folder_layout_and_the_background_option(caltech):
    full = load_collection("caltech101", str(caltech))  # the parent of 101_ObjectCategories
    assert full.class_names == sorted(COUNTS) and len(full.images) == 155  # background kept by default
    assert full.read(0).shape[-1] == 3 and full.read(0).dtype == np.uint8
    plain = load_collection("caltech101", str(caltech / "101_ObjectCategories"), background=False)
    assert plain.class_names == ["accordion", "brain", "camera"] and len(plain.images) == 130
    assert sorted(set(plain.labels)) == [0, 1, 2]
    assert np.bincount(plain.labels).tolist() == [70, 40, 20]
    with pytest.raises(FileNotFoundError, match="--data-dir .* is not a folder"):
        load_collection("caltech101", str(caltech / "missing"))


def test_folds_follow_the_protocol(caltech):
    data = load_collection("caltech101", str(caltech), background=False)
    folds = protocol_folds(data.labels, data.class_names, 15, 50, folds=5, seed=3)
    for train, test in folds:
        assert np.bincount(data.labels[train]).tolist() == [15, 15, 15]
        assert np.bincount(data.labels[test]).tolist() == [50, 25, 5]  # up to 50; the rest of small classes
        assert not set(train) & set(test)
    assert len({tuple(train) for train, _ in folds}) == 5  # folds differ
    again = protocol_folds(data.labels, data.class_names, 15, 50, folds=5, seed=3)
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(folds, again))
    other = protocol_folds(data.labels, data.class_names, 15, 50, folds=1, seed=4)
    assert not (other[0][0] == folds[0][0]).all()
    with pytest.raises(ValueError, match=r"--per-class 30 .* 'camera' \(20\)"):
        protocol_folds(data.labels, data.class_names, 30, 50)


def test_mean_per_class_accuracy_on_a_confusion_case():
    y_true = [0, 0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 2]
    assert mean_per_class_accuracy(y_true, y_pred, 3) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert np.mean(np.equal(y_true, y_pred)) == pytest.approx(5 / 7)  # not the overall accuracy


def test_softmax_on_frozen_features_learns_and_leaves_layers_untouched(caltech, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    source = kzoo.resnet20(classes=10)
    source.save_weights(str(tmp_path / "src.weights.h5"))
    out = tmp_path / "run"
    args = ["--model", "resnet20", "--model-classes", "10", "--weights", str(tmp_path / "src.weights.h5"),
            "--data-dir", str(caltech), "--per-class", "15", "--folds", "3", "--out", str(out)]
    assert main("caltech101", args) == 0
    results = json.loads((out / "results.json").read_text())
    row = results["rows"][0]
    assert (results["classes"], results["layer"], row["per_class"]) == (4, "avg_pool", 15)
    assert len(row["folds"]) == 3 and row["accuracy_mean"] > 0.8  # colours are separable
    assert row["accuracy_std"] == pytest.approx(np.std(row["folds"]))
    assert "| 15 | softmax(avg_pool) |" in (out / "results.md").read_text()
    features = [p for p in out.iterdir() if p.name.startswith("features-")]
    assert len(features) == 1  # extracted once, reused by every fold
    mtime = features[0].stat().st_mtime
    assert main("caltech101", args) == 0 and features[0].stat().st_mtime == mtime  # the cache is reused
    # layers 1-7 are bit-identical in the saved transfer model
    softmax = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4, activation="softmax", name="softmax")])
    copy = kzoo.resnet20(classes=10)
    saved = transfer_model(copy, "avg_pool", softmax)
    saved.load_weights(str(out / "transfer-15.weights.h5"))
    backbone = [w for w in copy.weights if not w.path.startswith("fc/")]
    reference = {w.path: w.numpy() for w in source.weights}
    assert backbone and all(np.array_equal(w.numpy(), reference[w.path]) for w in backbone)


def test_per_layer_and_from_scratch_rows(caltech, tmp_path):
    model = kzoo.alexnet(input_shape=(67, 67, 3), classes=10)
    assert per_layer_names(model) == ["pool1", "pool2", "relu3", "relu4", "pool5", "relu6", "relu7"]
    with pytest.raises(ValueError, match="per-layer analysis follows the AlexNet family"):
        per_layer_names(kzoo.resnet20())
    keras.utils.set_random_seed(0)
    kzoo.resnet20(classes=10).save_weights(str(tmp_path / "w.weights.h5"))
    out = tmp_path / "run"
    assert main("caltech101", ["--model", "resnet20", "--model-classes", "10", "--weights",
                               str(tmp_path / "w.weights.h5"), "--data-dir", str(caltech), "--no-background",
                               "--per-class", "15", "--folds", "1", "--from-scratch",
                               "--scratch-epochs", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["softmax(avg_pool)", "from scratch"]
    assert all(0.0 <= r["accuracy_mean"] <= 1.0 for r in rows)


def test_bad_input_names_the_problem(caltech, tmp_path, capsys):
    kzoo.resnet20(classes=10).save_weights(str(tmp_path / "r20.weights.h5"))
    with pytest.raises(SystemExit):
        main("caltech101", ["--model", "alexnet", "--weights", str(tmp_path / "r20.weights.h5"),
                            "--data-dir", str(caltech)])
    assert "does not fit 'alexnet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main("caltech101", ["--model", "resnet20", "--weights", "none", "--data-dir", str(tmp_path / "nowhere")])
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main("caltech101", ["--model", "resnet20", "--weights", "none", "--data-dir", str(caltech),
                            "--per-class", "30"])
    assert "'camera' (20)" in capsys.readouterr().err


def test_a_prepared_tfds_dataset_is_read_whole(tmp_path):
    from test_data import KzooToyImages  # noqa: F401  (registers the toy builder)

    from kzoo.data.caltech import tfds_collection

    tfds_builder = KzooToyImages(data_dir=str(tmp_path))
    tfds_builder.download_and_prepare()
    whole = tfds_collection(str(tmp_path), "kzoo_toy_images")
    assert len(whole.images) == 39 and whole.class_names == ["a", "b", "c"]  # train 30 + validation 9
    assert whole.read(0).shape == (20, 24, 3)
    without = tfds_collection(str(tmp_path), "kzoo_toy_images", background_name="b", background=False)
    assert without.class_names == ["a", "c"] and len(without.images) == 26
    assert sorted(set(without.labels)) == [0, 1]


def test_per_layer_svm_table_on_alexnet(caltech, tmp_path):
    keras.utils.set_random_seed(1)
    kzoo.alexnet(input_shape=(67, 67, 3), classes=10).save_weights(str(tmp_path / "a.weights.h5"))
    out = tmp_path / "run"
    assert main("caltech101", ["--model", "alexnet", "--input-size", "67", "--model-classes", "10", "--weights",
                               str(tmp_path / "a.weights.h5"), "--data-dir", str(caltech), "--per-class", "15",
                               "--folds", "2", "--per-layer", "svm", "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["softmax(relu7)"] + [
        f"svm({n})" for n in ("pool1", "pool2", "relu3", "relu4", "pool5", "relu6", "relu7")]
    assert all(len(r["folds"]) == 2 for r in rows)
    assert rows[1]["accuracy_mean"] > 0.8  # colour survives in the first layer's features
    table = (out / "results.md").read_text()
    assert "| 15 | svm(pool1) |" in table


def test_two_class_softmax_predicts_both_classes():
    from kzoo.evaluate.transfer import train_softmax

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (20, 5)), rng.normal(2, 1, (20, 5))]).astype("float32")
    y = np.repeat([0, 1], 20)
    predicted = np.argmax(train_softmax(x, y, classes=2).predict(x, verbose=0), axis=1)
    assert (predicted == y).mean() > 0.95  # sklearn's single binary row spread over both logits
