"""ZFNet's transfer protocol on a generated Caltech-style folder of real JPEG files."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo.data.caltech import load_collection, mean_per_class_accuracy, protocol_folds
from kzoo.tasks.transfer import per_layer_names, transfer_model
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
    assert mean_per_class_accuracy(y_true, y_pred, 3) != pytest.approx(5 / 7)  # not the overall accuracy


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
    from kzoo.tasks.transfer import train_softmax

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (20, 5)), rng.normal(2, 1, (20, 5))]).astype("float32")
    y = np.repeat([0, 1], 20)
    predicted = np.argmax(train_softmax(x, y, classes=2).predict(x, verbose=0), axis=1)
    assert (predicted == y).mean() > 0.95  # sklearn's single binary row spread over both logits


def _errorbars(container):
    """(x, y, low, high) of an errorbar's points (its Line2D) and bars (a segment per point, in
    order; empty where the error is NaN: low and high NaN there)."""
    x, y = container.lines[0].get_xydata().T
    segments = [np.asarray(s) for s in container.lines[2][0].get_segments()]
    assert len(segments) == len(x)
    assert all(s.size == 0 or (s[:, 0] == a).all() for s, a in zip(segments, x))  # each bar at its point
    low, high = np.array([(s[0, 1], s[1, 1]) if s.size else (np.nan, np.nan) for s in segments]).T
    return x, y, low, high


def test_several_training_sizes_draw_fig7_from_results_json(caltech, tmp_path, monkeypatch, capsys):
    """ZFNet Fig. 7: OUT/curve.png shows exactly results.json's means and stds (recomputed here
    from its folds) per method, and the paper's Table 3 points beside the matching method; one
    --per-class draws no curve and removes the earlier one."""
    from kzoo.tasks import transfer

    figures, save = [], transfer.save_figure
    monkeypatch.setattr(transfer, "save_figure", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    # the scratch baseline trains a network per fold (minutes); the figure must show whatever rows it
    # gives, so a seeded guesser stands in for it
    monkeypatch.setattr(transfer, "from_scratch", lambda *args, seed: np.random.default_rng(seed).integers(
        0, 3, len(args[4])))
    keras.utils.set_random_seed(0)
    kzoo.resnet20(classes=10).save_weights(str(tmp_path / "w.weights.h5"))
    out = tmp_path / "run"
    common = ["--model", "resnet20", "--model-classes", "10", "--weights", str(tmp_path / "w.weights.h5"),
              "--data-dir", str(caltech), "--no-background", "--folds", "3", "--from-scratch", "--out", str(out)]
    sizes = [1, 2, 3, 5, 10, 15]
    assert main("caltech101", [*common, "--per-class", *map(str, sizes)]) == 0
    assert f"{out / 'curve.png'}" in capsys.readouterr().out
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(figures) == 1
    rows = json.loads((out / "results.json").read_text())["rows"]
    drawn = {c.get_label(): _errorbars(c) for c in figures[0].axes[0].containers}
    assert sorted(drawn) == ["from scratch", "paper, from scratch (ZFNet Table 3)",
                             "paper, pretrained (ZFNet Table 3)", "softmax(avg_pool)"]
    for method in ("softmax(avg_pool)", "from scratch"):
        folds = np.array([r["folds"] for r in rows if r["method"] == method])  # (sizes, 3)
        x, y, low, high = drawn[method]
        np.testing.assert_array_equal(x, sizes)
        np.testing.assert_allclose(y, 100 * folds.mean(1), rtol=1e-12)
        np.testing.assert_allclose(high - y, 100 * folds.std(1), atol=1e-9)
        np.testing.assert_allclose(y - low, 100 * folds.std(1), atol=1e-9)
    assert drawn["softmax(avg_pool)"][1][-1] > 80  # colours separate; the guesser is near chance
    # SPEC §2 (ZFNet Table 3): 83.8 ± 0.5, 86.5 ± 0.5; from scratch 22.8 ± 1.5, 46.5 ± 1.7
    for label, expected in (("pretrained", [(15, 83.8, 0.5), (30, 86.5, 0.5)]),
                            ("from scratch", [(15, 22.8, 1.5), (30, 46.5, 1.7)])):
        x, y, low, high = drawn[f"paper, {label} (ZFNet Table 3)"]
        n, acc, std = np.array(expected).T
        np.testing.assert_array_equal(x, n)
        np.testing.assert_allclose(y, acc)
        np.testing.assert_allclose(high - y, std, atol=1e-9)
    containers = {c.get_label(): c for c in figures[0].axes[0].containers}
    assert (containers["paper, pretrained (ZFNet Table 3)"].lines[0].get_color()
            == containers["softmax(avg_pool)"].lines[0].get_color())
    # other flags into the same --out: refused before any work, the finished results kept as they are
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main("caltech101", [*common, "--per-class", "5"])
    assert exit_.value.code == 2 and "holds the results of another run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == kept
    # one training size: a point, not a curve
    other = [*common[:-1], str(tmp_path / "one-size")]
    assert main("caltech101", [*other, "--per-class", "5"]) == 0
    assert not (tmp_path / "one-size" / "curve.png").exists() and len(figures) == 1
    assert "curve.png" not in capsys.readouterr().out
    assert {r["per_class"] for r in json.loads((tmp_path / "one-size" / "results.json").read_text())["rows"]} == {5}


def test_caltech256_curve_shows_table4_beside_the_softmax_only():
    """Without --from-scratch only the pretrained points of ZFNet Table 4 (SPEC §2: 65.7, 70.6,
    72.7, 74.2 ± 0.3 at 15, 30, 45, 60 per class) join the curve; the sizes come out sorted."""
    from kzoo.data.caltech import DATASETS
    from kzoo.tasks.transfer import curve_figure

    rows = [{"per_class": n, "method": "softmax(relu7)", "accuracy_mean": m, "accuracy_std": s}
            for n, m, s in ((30, 0.5, 0.02), (5, 0.25, 0.01))]
    fig = curve_figure({"dataset": "caltech256", "layer": "relu7", "folds": 5, "rows": rows},
                       DATASETS["caltech256"]["paper"])
    drawn = {c.get_label(): _errorbars(c) for c in fig.axes[0].containers}
    assert sorted(drawn) == ["paper, pretrained (ZFNet Table 4)", "softmax(relu7)"]
    x, y, low, high = drawn["softmax(relu7)"]
    np.testing.assert_array_equal(x, [5, 30])
    np.testing.assert_allclose(np.c_[y, high - y], [[25, 1], [50, 2]])
    x, y, low, high = drawn["paper, pretrained (ZFNet Table 4)"]
    np.testing.assert_array_equal(x, [15, 30, 45, 60])
    np.testing.assert_allclose(y, [65.7, 70.6, 72.7, 74.2])
    assert np.isnan(high[:3]).all() and high[3] - y[3] == pytest.approx(0.3)  # SPEC gives the last std only


def test_a_results_folder_is_never_replaced_by_another_run(tmp_path):
    """The one writer of results.json/.md refuses a folder holding another run's results or a
    results.md of the user's, and lets the same settings write again (a rerun)."""
    from kzoo.tasks.transfer import claim_results, write_results
    from kzoo.tune.search import check_settings

    folder = tmp_path / "out"
    settings = {"identity": ["resnet20", {}], "seed": 0, "per_class": (5, 10)}
    claim_results(str(folder), settings)  # nothing there yet
    write_results(str(folder), {"settings": {"identity": ["resnet20", {}], "seed": 0, "per_class": [5, 10]}}, "| t |")
    claim_results(str(folder), settings)  # the same run again
    with pytest.raises(ValueError, match=r"holds the results of another run .*settings .*'seed': 0.*Pick another --out"):
        claim_results(str(folder), {**settings, "seed": 1})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.md").write_text("my notes")
    with pytest.raises(ValueError, match=r"holds a results\.md without kzoo's results\.json beside it"):
        claim_results(str(mine), settings)
    with pytest.raises(ValueError, match=r"holds files that are not a kzoo study \(results\.md\); its report would"):
        check_settings(str(mine), {"study": "alexnet-design", "space": "rows", "run": {}})
    assert (mine / "results.md").read_text() == "my notes"
