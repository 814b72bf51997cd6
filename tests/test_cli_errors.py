"""Every command line refuses a bad argument with exit code 2 and one line naming the flag
and what it accepts, before anything is written (issue #12)."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

INT1 = "expected an integer >= 1, got"
INT0 = "expected an integer >= 0, got"


def _recipe(name):
    import importlib

    from kzoo.recipes.common import main

    module = importlib.import_module(f"kzoo.recipes.{name}")
    return getattr(module, "main", None) if name == "overfeat" else (lambda argv: main(module.RECIPE, argv))


def _main(command):
    """command -> its in-process main(argv)."""
    import functools

    if command in ("alexnet", "zfnet", "overfeat", "resnet", "resnet_cifar"):
        return _recipe(command)
    if command in ("caltech101", "caltech256"):
        from kzoo.recipes.caltech import main

        return functools.partial(main, command)
    if command == "prepare":
        from kzoo.data.prepare import main
    elif command == "ablation":
        from kzoo.recipes.ablation import main
    elif command == "evaluate":
        from kzoo.evaluate.run import main
    else:
        from kzoo.visualize.run import main
    return main


def _refused(capsys, command, argv):
    """Runs the CLI, asserts exit code 2; returns its last stderr line."""
    with pytest.raises(SystemExit) as exit_:
        _main(command)(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


PARSE_ERRORS = [
    ("alexnet", ["--epochs", "0"], "--epochs", f"{INT1} '0'"),
    ("alexnet", ["--epochs", "-3"], "--epochs", f"{INT1} '-3'"),
    ("zfnet", ["--batch-size", "-8"], "--batch-size", f"{INT1} '-8'"),
    ("zfnet", ["--batch-size", "0"], "--batch-size", f"{INT1} '0'"),
    ("overfeat", ["--steps-per-epoch", "0"], "--steps-per-epoch", f"{INT1} '0'"),
    ("resnet", ["--checkpoint-every", "-1"], "--checkpoint-every", f"{INT0} '-1'"),
    ("resnet_cifar", ["--input-size", "0"], "--input-size", f"{INT1} '0'"),
    ("resnet_cifar", ["--seed", "-1"], "--seed", f"{INT0} '-1'"),
    ("resnet_cifar", ["--epochs", "two"], "--epochs", f"{INT1} 'two'"),
    ("overfeat", ["--localize", "--regressor-epochs", "0"], "--regressor-epochs", f"{INT1} '0'"),
    ("overfeat", ["--localize", "--merge-threshold", "-1"], "--merge-threshold", "expected a number >= 0, got '-1'"),
    ("overfeat", ["--localize", "--merge-threshold", "nan"], "--merge-threshold", "expected a number >= 0, got 'nan'"),
    ("overfeat", ["--localize", "--limit", "0"], "--limit", f"{INT1} '0'"),
    ("overfeat", ["--detect", "--min-score", "1.5"], "--min-score", "expected a number in [0, 1], got '1.5'"),
    ("overfeat", ["--detect", "--scales", "1", "0"], "--scales", "expected a number > 0, got '0'"),
    ("overfeat", ["--detect", "--hard-negatives", "0"], "--hard-negatives", f"{INT1} '0'"),
    ("ablation", ["zfnet-table3", "--max-trials", "0"], "--max-trials", f"{INT1} '0'"),
    ("ablation", ["zfnet-table3", "--epochs", "-1"], "--epochs", f"{INT1} '-1'"),
    ("ablation", ["zfnet-table3", "--steps-per-epoch", "0"], "--steps-per-epoch", f"{INT1} '0'"),
    ("ablation", ["zfnet-table3", "--batch-size", "0"], "--batch-size", f"{INT1} '0'"),
    ("ablation", ["zfnet-table3", "--input-size", "0"], "--input-size", f"{INT1} '0'"),
    ("caltech101", ["--per-class", "15", "0"], "--per-class", f"{INT1} '0'"),
    ("caltech101", ["--test-max", "0"], "--test-max", f"{INT1} '0'"),
    ("caltech256", ["--folds", "0"], "--folds", f"{INT1} '0'"),
    ("caltech256", ["--C", "0"], "--C", "expected a number > 0, got '0'"),
    ("caltech101", ["--scratch-epochs", "-2"], "--scratch-epochs", f"{INT1} '-2'"),
    ("caltech101", ["--model-classes", "0"], "--model-classes", f"{INT1} '0'"),
    ("caltech101", ["--input-size", "0"], "--input-size", f"{INT1} '0'"),
    ("caltech101", ["--mean", "300", "0", "0"], "--mean", "expected a number in [0, 255], got '300'"),
    ("evaluate", ["--limit", "0"], "--limit", f"{INT1} '0'"),
    ("visualize", ["deconv", "--limit", "0"], "--limit", f"{INT1} '0'"),
    ("visualize", ["neighbours", "--k", "0"], "--k", f"{INT1} '0'"),
    ("visualize", ["neighbours", "--train-limit", "0"], "--train-limit", f"{INT1} '0'"),
    ("visualize", ["occlusion", "--size", "0"], "--size", f"{INT1} '0'"),
    ("visualize", ["occlusion", "--stride", "-4"], "--stride", f"{INT1} '-4'"),
    ("visualize", ["filters", "--radius", "-0.1"], "--radius", "expected a number >= 0, got '-0.1'"),
    ("visualize", ["deconv", "--feature-map", "-1"], "--feature-map", f"{INT0} '-1'"),
    ("visualize", ["deconv", "--position", "-1", "0"], "--position", f"{INT0} '-1'"),
    ("visualize", ["top9", "--maps", "0", "-2"], "--maps", f"{INT0} '-2'"),
    ("visualize", ["occlusion", "--label", "-1"], "--label", f"{INT0} '-1'"),
    ("visualize", ["deconv", "--classes", "0"], "--classes", f"{INT1} '0'"),
    ("resnet_cifar", ["--option", "shortcut"], "--option", "expected KEY=VALUE (e.g. towers=1), got 'shortcut'"),
    ("alexnet", ["--option", "=1"], "--option", "expected KEY=VALUE (e.g. towers=1), got '=1'"),
    ("alexnet", ["--pca-std", "-0.1"], "--pca-std", "expected a number >= 0, got '-0.1'"),
    ("resnet", ["--pca-std", "nan"], "--pca-std", "expected a number >= 0, got 'nan'"),
    ("overfeat", ["--pca-std", "strong"], "--pca-std", "expected a number >= 0, got 'strong'"),
    ("prepare", ["--short-side", "-1"], "--short-side", f"{INT0} '-1'"),
    ("prepare", ["--center", "0"], "--center", f"{INT1} '0'"),
    ("prepare", ["--images-per-shard", "0"], "--images-per-shard", f"{INT1} '0'"),
    ("prepare", ["--quality", "101"], "--quality", "expected an integer in [1, 100], got '101'"),
    ("prepare", ["--val-fraction", "1.5"], "--val-fraction", "expected a number in [0, 1), got '1.5'"),
    ("prepare", ["--val-fraction", "1.0"], "--val-fraction", "expected a number in [0, 1), got '1.0'"),
    ("prepare", ["--seed", "-2"], "--seed", f"{INT0} '-2'"),
]


@pytest.mark.parametrize("command, argv, flag, accepted", PARSE_ERRORS,
                         ids=[f"{c}{'_'.join(a)}" for c, a, _, _ in PARSE_ERRORS])
def test_numeric_flags_are_refused_at_parse_time(tmp_path, capsys, command, argv, flag, accepted):
    out = tmp_path / "out"
    where = {"evaluate": [], "visualize": ["--out", str(out)], "ablation": ["--out", str(out)],
             "prepare": ["--out", str(out), "--data-dir", str(tmp_path)],
             "caltech101": ["--out", str(out), "--data-dir", str(tmp_path)]}
    extra = where.get(command, where["caltech101"] if command.startswith("caltech") else ["--run-dir", str(out)])
    line = _refused(capsys, command, [*argv, *extra])
    assert line.endswith(f"error: argument {flag}: {accepted}")
    assert not out.exists()


CHECKED_AFTER_PARSING = [
    ("alexnet", ["--input-size", "63"],
     "error: argument --input-size: 63 is too small for alexnet; expected an integer >= 64 (the paper uses 224)."),
    ("overfeat", ["--localize", "--model", "accurate", "--input-size", "76"],
     "error: argument --input-size: 76 is too small for overfeat_accurate; expected an integer >= 77 "
     "(the paper uses 221)."),
    ("resnet", ["--depth", "18", "--input-size", "31"],
     "error: argument --input-size: 31 is too small for resnet18; expected an integer >= 32 (the paper uses 224)."),
    ("ablation", ["zfnet-table3", "--input-size", "63"],  # its AlexNet rows need 64
     "error: argument --input-size: 63 is too small for alexnet; expected an integer >= 64 (the paper uses 224)."),
    ("overfeat", ["--limit", "5"], "error: --limit is for localization or detection; add --localize or --detect."),
    ("overfeat", ["--negatives", "3", "--no-background"],
     "error: --negatives, --no-background are for detection; add --detect."),
    ("overfeat", ["--detect", "--localize"], "error: --localize and --detect are two tasks; give one."),
    ("overfeat", ["--detect", "--xla", "--steps-per-epoch", "4"], "error: --steps-per-epoch, --xla are not used by "
                                                                  "--detect; the detector trains on windows, in this process."),
    ("overfeat", ["--detect", "--pca-std", "0", "--log-every", "3"], "error: --pca-std, --log-every are not used by "
                                                                     "--detect; the detector trains on windows, in this process."),
    ("overfeat", ["--detect", "--input-size", "70"], "error: argument --input-size: 70 is too small for overfeat_fast; "
                                                     "expected an integer >= 71 (the paper uses 231)."),
    ("overfeat", ["--detect", "--boxes", "b.csv"], "error: --boxes needs --data-dir (the images it boxes)."),
    ("overfeat", ["--detect", "--no-background", "--rounds", "2"],
     "error: --rounds is for the background class; --no-background trains without negatives."),
    ("overfeat", ["--detect", "--input-size", "300"], "error: argument --input-size: 300 is too large for the built-in "
     "scenes (3x the window per side); expected at most 256, or give --data-dir DIR --boxes BOXES."),
    ("ablation", ["alexnet-design", "--tuner", "hyperband", "--max-trials", "3"],
     "error: --max-trials does not apply to --tuner hyperband (its budget is --epochs); leave it out."),
    ("overfeat", ["--regressor", "single", "--regressor-epochs", "3"],
     "error: --regressor, --regressor-epochs are for localization or detection; add --localize or --detect."),
    ("alexnet", ["--option", "tower=1"],  # names the builder's options
     "error: argument --option: alexnet has no option 'tower' (did you mean 'towers'?); its options are activation, "
     "conv_maps, fc_units, init, lrn, lrn_convention, one_tower, overlapping_pool, remove_layers, tower_devices, "
     "towers."),
    ("overfeat", ["--option", "towers=1"], "error: argument --option: overfeat_fast has no option 'towers'; its "
                                           "options are activation."),
    ("resnet_cifar", ["--plain", "--option", "shortcut=A"], "error: argument --option: plain20 has no options (got "
                                                            "shortcut); leave out --option."),
    ("resnet", ["--depth", "18", "--option", "classes=10"],  # the engine's argument, not an option
     "error: argument --option: resnet18 has no option 'classes'; its options are shortcut, stride_placement."),
    ("resnet_cifar", ["--option", "shortcut=D"],  # the builder's refusal, before the data and the run
     "error: argument --option: resnet20: `shortcut` must be one of ('A', 'B', 'C') (He et al. §3.3); got 'D'."),
    ("alexnet", ["--option", "lrn=maybe"], "error: argument --option: alexnet: `lrn` must be True or False; "
                                           "got 'maybe'."),
    ("zfnet", ["--option", "activation=sigmoid"],  # AlexNet Fig. 1's two units only
     "error: argument --option: zfnet: `activation` must be one of ('relu', 'tanh') (AlexNet §3.1, Fig. 1); "
     "got 'sigmoid'."),
    ("zfnet", ["--option", "remove_layers=3"],  # "3," or "(3,)": a tuple
     "error: argument --option: zfnet: `remove_layers` must be a tuple, e.g. (3,) or (3, 4); got 3."),
]


@pytest.mark.parametrize("command, argv, message", CHECKED_AFTER_PARSING,
                         ids=[f"{c}{'_'.join(a)}" for c, a, _ in CHECKED_AFTER_PARSING])
def test_model_limits_are_checked_before_a_run_starts(tmp_path, capsys, command, argv, message):
    out = tmp_path / "out"
    line = _refused(capsys, command, [*argv, "--out" if command == "ablation" else "--run-dir", str(out)])
    assert line.endswith(message)
    assert not out.exists()


def test_caltech_arguments_that_would_be_ignored_or_random(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--data-dir", str(tmp_path), "--out", str(out)]
    assert _refused(capsys, "caltech101", ["--model", "resnet20", *base]) == (
        "error: argument --weights: --model resnet20 needs its trained weights: give --weights PATH "
        "(a .weights.h5 file or a weights name), or --weights none for random weights.")
    assert _refused(capsys, "caltech101", ["--model", "alexnet", "--weights", "none", "--input-size", "40",
                                           *base]) == (
        "error: argument --input-size: 40 is too small for alexnet; expected an integer >= 64 (the paper uses 224).")
    assert _refused(capsys, "caltech256", ["--run-dir", "R", "--weights", "W", "--input-size", "99", *base]) == (
        "error: --weights, --input-size go with --model; --run-dir R brings its own model, weights and mean.")
    assert _refused(capsys, "caltech101", ["--model", "resnet20", "--weights", "none", "--scratch-epochs", "3",
                                           *base]).endswith(
        ": error: --scratch-epochs is for the scratch baseline; add --from-scratch.")
    assert not out.exists()


def _write_images(folder, n=3, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        tf.io.write_file(str(folder / f"{i}.png"), tf.io.encode_png(image))


def test_a_single_class_folder_is_refused_before_training(tmp_path, capsys):
    from kzoo.data.sources import load_source

    _write_images(tmp_path / "data" / "cats")
    with pytest.raises(ValueError) as err:
        load_source(None, str(tmp_path / "data"))
    message = (f"{str(tmp_path / 'data')!r} has 1 class ('cats'); a classifier needs at least 2: "
               f"add a sub-folder of images per class.")
    assert str(err.value) == message
    run_dir = tmp_path / "run"
    line = _refused(capsys, "resnet_cifar", ["--data-dir", str(tmp_path / "data"), "--run-dir", str(run_dir)])
    assert line == f"error: {message}"
    assert not run_dir.exists()


class KzooOneClass(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(names=["only"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(2), "validation": self._generate_examples(1)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.zeros((8, 8, 3), np.uint8), "label": 0}


def test_a_single_class_tfds_dataset_is_refused(tmp_path):
    from kzoo.data.sources import load_source

    KzooOneClass(data_dir=str(tmp_path)).download_and_prepare()
    with pytest.raises(ValueError) as err:
        load_source("kzoo_one_class", str(tmp_path))
    assert str(err.value) == ("tfds dataset 'kzoo_one_class' has 1 class ('only'); a classifier needs at least 2: "
                              "pick a dataset with several classes.")


def test_undecodable_and_missing_images_are_named(tmp_path, capsys):
    from kzoo.data.images import read

    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    jpeg = tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ValueError) as err:
        read(str(text))
    assert str(err.value) == f"{str(text)!r} is not a JPEG, PNG, BMP or GIF image; remove or replace it."
    with pytest.raises(ValueError) as err:
        read(str(cut))
    assert str(err.value) == (f"{str(cut)!r} cannot be decoded as an image (Truncated File Read); remove or "
                              f"replace it.")
    with pytest.raises(FileNotFoundError, match=f"image file {str(tmp_path / 'gone.png')!r} does not exist."):
        read(str(tmp_path / "gone.png"))
    out = tmp_path / "figures"
    for bad in (text, cut):  # the CLI's --images: the file named, no figure written
        line = _refused(capsys, "visualize", ["occlusion", "--model", "resnet20", "--images", str(bad),
                                              "--out", str(out)])
        assert line.startswith(f"error: {str(bad)!r} ") and line.endswith("; remove or replace it.")
    assert not out.exists()


VISUALIZE_AFTER_LOADING = [
    (["deconv", "--layer", "conv1_relu", "--feature-map", "16"],
     "--feature-map: 16 is out of range; expected 0..15 (the 16 maps of conv1_relu)."),
    (["top9", "--layer", "conv1_relu", "--maps", "3", "16", "40"],
     "--maps: 16 40 is out of range; expected 0..15 (the 16 maps of conv1_relu)."),
    (["deconv", "--layer", "conv1_relu", "--position", "5", "32"],
     "--position: 5 32 is out of range; expected Y in 0..31 and X in 0..31 (the 32x32 maps of conv1_relu)."),
    (["filters", "--run-dir", "RUN", "--weights", "W.weights.h5"], None),
    (["occlusion", "--label", "10"], "--label: 10 is out of range; expected 0..9 (the model's 10 classes)."),
    (["occlusion", "--size", "33"], "--size: 33 is out of range; expected 1..32 (the model's 32px input)."),
    (["neighbours", "--k", "4", "--train-limit", "3", "--limit", "1"],
     "--k: 4 is out of range; expected at most the 3 training images searched (--train-limit)."),
]


@pytest.mark.parametrize("argv, message", VISUALIZE_AFTER_LOADING, ids=[a[0] + a[1] for a, _ in VISUALIZE_AFTER_LOADING])
def test_visualize_flags_checked_against_the_model(tmp_path, capsys, argv, message):
    out = tmp_path / "figures"
    if message is None:  # a run brings its own weights
        line = _refused(capsys, "visualize", [*argv, "--out", str(out)])
        assert line == "error: --weights goes with --model; --run-dir brings its own model and weights."
    else:
        line = _refused(capsys, "visualize", [*argv, "--model", "resnet20", "--out", str(out)])
        assert line == f"error: argument {message}"
    assert not out.exists()


@pytest.fixture(scope="module")
def digits_run(trained_run):
    """A finished two-step resnet20 run on the digits, at the smallest input (8 px)."""
    return trained_run("resnet_cifar", "--smoke", "--input-size", "8")[0]


def _copy(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def test_evaluate_refuses_random_weights_and_other_classes(digits_run, capsys):
    assert _refused(capsys, "evaluate", ["--model", "resnet20"]) == (
        "error: argument --weights: --model resnet20 needs its trained weights: give --weights PATH "
        "(a .weights.h5 file or a weights name), or --weights none for random weights.")
    assert _refused(capsys, "evaluate", ["--run-dir", str(digits_run), "--dataset", "shapes"]) == (
        "error: dataset 'shapes' has 3 classes (red, green, blue, ...) but the model has classes=10: its scores "
        "would be read against other labels. Evaluate on the data the model was trained for (--dataset / "
        "--data-dir).")


def test_evaluate_warns_about_an_unfinished_run(digits_run, tmp_path, capsys):
    from kzoo.evaluate.run import main

    run_dir = _copy(digits_run, tmp_path)
    (run_dir / "metrics.json").unlink()
    assert main(["--run-dir", str(run_dir), "--limit", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == (
        f"warning: run {str(run_dir)!r} is unfinished (no metrics.json): its checkpoint is at epoch 1 of 1, "
        f"step 2; using it as it is.")
    assert json.loads(captured.out.strip().splitlines()[-1])["images"] == 4
    (run_dir / "metrics.json").write_text(json.dumps({"steps": 5}))  # trained on, checkpoint folder older
    assert main(["--run-dir", str(run_dir), "--limit", "1"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"warning: run {str(run_dir)!r} finished at step 5, but its checkpoint is at epoch 1 of 1, step 2; "
        f"using it as it is.")
    assert main(["--run-dir", str(digits_run), "--limit", "1"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_evaluate_names_what_is_wrong_with_a_run_directory(digits_run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _refused(capsys, "evaluate", ["--run-dir", str(tmp_path / "notes.txt")]) == (
        f"error: {str(tmp_path / 'notes.txt')!r} is a file, not a kzoo run directory; give the folder a training "
        f"command wrote (its --run-dir).")
    run_dir = _copy(digits_run, tmp_path)
    (run_dir / "config.json").unlink()
    assert _refused(capsys, "evaluate", ["--run-dir", str(run_dir)]) == (
        f"error: {str(run_dir)!r} holds checkpoints but no config.json, which names the run's model, data and "
        f"preprocessing: restore config.json from a copy of the run directory.")
    for content in ("[]", "{}", '{"identity": 3}'):
        (run_dir / "config.json").write_text(content)
        assert _refused(capsys, "evaluate", ["--run-dir", str(run_dir)]).startswith(
            f"error: {str(run_dir / 'config.json')} is damaged (not a kzoo run record: no identity, config and dataset)")


def test_evaluate_names_a_checkpoint_of_another_model(digits_run, tmp_path, capsys, caplog):
    run_dir = _copy(digits_run, tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["identity"]["model"] = "resnet32"  # edited: the checkpoint is a resnet20's
    (run_dir / "config.json").write_text(json.dumps(config))
    err = _refused_output(capsys, ["--run-dir", str(run_dir)])
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"error: the checkpoint in {str(run_dir / 'checkpoints')!r} does not fit the run's "
                                f"model resnet32 (options {{}}, input 8, 10 classes, as its config.json says): ")
    assert lines[-1].endswith("It comes from another run, or config.json was edited; restore the run's own files.")
    assert not [r.getMessage() for r in caplog.records if r.name == "tensorflow"]  # not one warning per tensor


def _refused_output(capsys, argv):
    from kzoo.evaluate.run import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_corrupt_image_in_a_data_folder_is_named(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("train", "val"):
        for c, name in enumerate(("a", "b")):
            _write_images(data / split / name, n=2, seed=c)
    jpeg = tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy()
    cut = data / "val" / "b" / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])  # passes the leading-bytes check, fails decoding
    message = (f"error: an image of 'data' failed: {str(cut)!r} cannot be decoded as an image (Truncated File "
               f"Read); remove or replace it.")
    assert _refused(capsys, "evaluate", ["--model", "resnet20", "--weights", "none", "--data-dir", str(data)]) == message
    out = tmp_path / "figures"
    assert _refused(capsys, "visualize", ["deconv", "--model", "resnet20", "--classes", "2", "--data-dir", str(data),
                                          "--out", str(out)]) == message
    assert not out.exists()


def test_an_unknown_dataset_is_one_line_with_suggestions(tmp_path, capsys):
    run_dir = tmp_path / "run"
    line = _refused(capsys, "resnet_cifar", ["--dataset", "cifar_10", "--run-dir", str(run_dir)])
    assert line.startswith("error: --dataset 'cifar_10' is neither built in (digits, shapes) nor a "
                           "tensorflow-datasets name; did you mean 'cifar10', ")  # the rest: tfds' version's list
    assert not run_dir.exists()


@pytest.mark.parametrize("argv, message", [
    (["predictions", "--draws", "4", "--scales", "2"],
     "--scales is for invariance; --draws is for correspondence, not predictions: leave them out."),
    (["invariance", "--layer", "relu1"], "--layer is for deconv, top9, occlusion, filters, neighbours, "
                                         "not invariance: leave it out (--layers names its layers)."),
    (["deconv", "--radius", "0.1"], "--radius is for filters, not deconv: leave it out."),
], ids=["predictions", "invariance", "deconv"])
def test_visualize_refuses_another_commands_flags(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert _refused(capsys, "visualize", [*argv, "--out", str(out)]).endswith(f"error: {message}")
    assert not out.exists()


def test_visualize_curves_may_come_after_its_out_flag(tmp_path, capsys):
    # dispatched to curves (its own message), not refused by the model commands' parser
    line = _refused(capsys, "visualize", ["--out", str(tmp_path / "c.png"), "curves", str(tmp_path / "none")])
    assert line.endswith(f"error: '{tmp_path / 'none'}' is not a kzoo run directory (it does not exist); give the "
                         f"--run-dir of a training command.")


@pytest.mark.parametrize("command, argv, flag", [
    ("resnet_cifar", ["--run-dir", ""], "--run-dir"),
    ("resnet_cifar", ["--dataset", " "], "--dataset"),
    ("overfeat", ["--localize", "--dataset", ""], "--dataset"),
    ("caltech101", ["--model", "resnet20", "--data-dir", "c", "--exclude", ""], "--exclude"),
    ("ablation", ["resnet-cifar-depth", "--out", ""], "--out"),
    ("prepare", ["--data-dir", "x", "--out", ""], "--out"),
    ("evaluate", ["--model", "resnet20", "--weights", "digits", "--json", ""], "--json"),
    ("evaluate", ["--model", "resnet20", "--weights", ""], "--weights"),
    ("visualize", ["deconv", "--model", "resnet20", "--weights", "digits", "--out", ""], "--out"),
    ("visualize", ["deconv", "--model", "resnet20", "--weights", "digits", "--images", "a.png", ""], "--images"),
    ("predict", ["", "--model", "resnet20", "--weights", "digits"], "images"),
    ("overlap", ["--data-dir", "a", "--against", "b", "--out", ""], "--out"),
    ("report", ["--check", ""], "--check"),
])
def test_an_empty_value_is_refused_by_name_not_taken_for_the_default(command, argv, flag, capsys, tmp_path,
                                                                      monkeypatch):
    """'' would be "not given" (`x or default`) or the current folder (`Path('')`): every
    command's parser refuses it before any work (nothing is written into the current folder)."""
    import importlib

    monkeypatch.chdir(tmp_path)
    modules = {"predict": "kzoo.predict", "overlap": "kzoo.data.overlap", "report": "kzoo.utils.report"}
    main = importlib.import_module(modules[command]).main if command in modules else _main(command)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {flag}: expected a value, got an empty one (" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, argv, message", [
    ("resnet_cifar", ["--print-schedule", "--epochs", "3"],
     "--print-schedule prints the paper's schedule and trains nothing: --epochs would be ignored; leave it out."),
    ("resnet_cifar", ["--evolution-images", "3"],
     "--evolution-images goes with --evolution (the figure it sizes); add --evolution or leave it out."),
    ("resnet", ["--plain", "--depth", "18", "--shortcut", "A"],
     "--shortcut A is for residual nets; --plain nets have no shortcuts: drop --shortcut."),
    ("resnet", ["--shortcut", "A", "--option", "shortcut=C"],
     "--shortcut A and --option shortcut=C both set shortcut; give one of them."),
    ("alexnet", ["--option", "towers=1", "--option", "towers=2"],
     "argument --option: towers is given 2 times; give each option once."),
    ("evaluate", ["--model", "resnet20", "--weights", "digits", "--overwrite"],
     "--overwrite replaces a --json file; give --json PATH, or leave --overwrite out."),
    ("overlap", ["--data-dir", "a", "--against", "b", "--overwrite"],
     "--overwrite replaces an --out file; give --out FILE, or leave --overwrite out."),
    ("prepare", ["--data-dir", "d", "--out", "o", "--quality", "80"],
     "--quality is the JPEG quality of --encoding jpeg; add --encoding jpeg or leave --quality out."),
    ("prepare", ["--data-dir", "split", "--out", "o", "--seed", "3"],
     "split/train/ and its val/ are the split: --seed would be ignored; leave it out."),
    ("report", ["--check", "a.md", "--output", "b.md"], "give --check FILE (compare) or --output FILE (write), not both."),
    # a flag given at its default value is still given (it was judged by its value before)
    ("overfeat", ["--regressor-epochs", "30"],
     "--regressor-epochs is for localization or detection; add --localize or --detect."),
    ("prepare", ["--data-dir", "d", "--out", "o", "--quality", "95"],
     "--quality is the JPEG quality of --encoding jpeg; add --encoding jpeg or leave --quality out."),
    ("resnet_cifar", ["--print-schedule", "--batch-size", "128"],
     "--print-schedule prints the paper's schedule and trains nothing: --batch-size would be ignored; leave it out."),
    ("visualize", ["deconv", "--model", "resnet20", "--k", "5", "--out", "o"], "--k is for neighbours, not deconv: leave it out."),
    ("visualize", ["deconv", "--run-dir", "r1", "r2"],
     "--run-dir takes several values for responses only (it compares models); give one for deconv."),
    ("visualize", ["deconv", "--model", "resnet20", "--images", "a.png", "--dataset", "digits"],
     "--images replaces the dataset: give --images, or --dataset, not both."),
    ("visualize", ["filters", "--model", "resnet20", "--limit", "3"],
     "filters draws the first layer's filters and reads no images: leave --limit out."),
    ("visualize", ["responses", "--model", "resnet20", "plain20", "--layer", "conv1"],
     "--layer is for "),
])
def test_a_flag_another_flag_makes_void_is_refused(command, argv, message, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "split" / "train").mkdir(parents=True)
    modules = {"overlap": "kzoo.data.overlap", "report": "kzoo.utils.report"}
    main = importlib.import_module(modules[command]).main if command in modules else _main(command)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("error: " + message) if not message.endswith(" ") else ("error: " + message) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]
