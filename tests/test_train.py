"""The training engine and the recipes, end to end on the built-in digits."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.sources import builtin_digits, image_folder, load_source
from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet
from kzoo.recipes.common import main
from kzoo.train.engine import TrainConfig, TrainingDiverged, train
from kzoo.train.schedules import StepsAt


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("recipe, extra", [
    (alexnet.RECIPE, []), (zfnet.RECIPE, []), (overfeat.RECIPE, ["--model", "accurate"]),
    (resnet.RECIPE, ["--depth", "18"]), (resnet_cifar.RECIPE, ["--depth", "20"]),
])
def test_recipe_smoke_writes_a_complete_run_directory(tmp_path, recipe, extra):
    run_dir = str(tmp_path / "run")
    assert main(recipe, ["--smoke", "--run-dir", run_dir, *extra]) == 0
    for name in ("config.json", "history.csv", "curves.png", "metrics.json", "checkpoints/latest.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    metrics = read_metrics(run_dir)
    assert metrics["steps"] == 2 and 0 <= metrics["val_top1_err"] <= 1


def test_print_schedule_states_the_paper(capsys):
    assert main(alexnet.RECIPE, ["--print-schedule"]) == 0
    text = capsys.readouterr().out
    for fact in ("128", "lr 0.01, divided by 10", "at most 3 times", "0.0005", "PCA colour noise std 0.1", "§5"):
        assert fact in text
    assert main(resnet_cifar.RECIPE, ["--print-schedule", "--depth", "110"]) == 0
    assert "lr 0.01 until training error < 80%" in capsys.readouterr().out


@pytest.mark.slow
def test_resnet20_learns_the_digits(tmp_path):
    run_dir = str(tmp_path / "run")
    assert main(resnet_cifar.RECIPE, ["--epochs", "5", "--run-dir", run_dir]) == 0
    history = [line.split(",") for line in open(os.path.join(run_dir, "history.csv")).read().split()[1:]]
    losses = [float(row[3]) for row in history]
    assert losses[-1] < 0.5 * losses[0]
    assert read_metrics(run_dir)["val_top1_err"] < 0.5  # chance: 0.9


@pytest.mark.slow
def test_rerun_resumes_and_other_models_are_refused(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    args = ["--smoke", "--run-dir", run_dir, "--depth", "20"]
    assert main(resnet_cifar.RECIPE, args) == 0
    assert main(resnet_cifar.RECIPE, [*args, "--epochs", "2"]) == 0  # continues: one more epoch
    finished = read_metrics(run_dir)
    assert finished["steps"] == 4
    assert main(resnet_cifar.RECIPE, [*args, "--epochs", "2"]) == 0  # finished: nothing to redo
    assert read_metrics(run_dir) == finished
    with pytest.raises(SystemExit) as exit_:
        main(resnet_cifar.RECIPE, ["--smoke", "--run-dir", run_dir, "--depth", "32"])
    assert exit_.value.code == 2
    assert f"run directory {run_dir!r} holds another run" in capsys.readouterr().err
    assert read_metrics(run_dir)["steps"] == 4  # untouched


def _config(run_dir, **kw):
    defaults = dict(model="resnet20", schedule=StepsAt(0.1, (), 1.0), preprocess=resnet_cifar.RECIPE.preprocess,
                    batch_size=16, epochs=1, momentum=0.9, weight_decay=1e-4, steps_per_epoch=2, val_steps=1,
                    verbose=0)
    return TrainConfig(run_dir=str(run_dir), **{**defaults, **kw})


def test_missing_and_empty_data_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_source(None, str(tmp_path / "nope"))
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "dog").mkdir()
    tf.io.write_file(str(tmp_path / "data" / "cat" / "a.png"), tf.io.encode_png(np.zeros((8, 8, 3), "uint8")))
    with pytest.raises(ValueError, match=r"dog.*holds no images"):
        image_folder(tmp_path / "data")


def test_unreadable_images_are_named(tmp_path):
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(20):
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(np.full((12, 12, 3), i * 10, "uint8")))
    (root / "dog" / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.jpg.*not a JPEG"):
        image_folder(root)
    os.remove(root / "dog" / "text.jpg")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)  # JPEG header, no image
    source = image_folder(root, val_fraction=0.1)
    config = _config(tmp_path / "run", seed=0)
    config.steps_per_epoch = None
    with pytest.raises(ValueError, match=r"broken\.jpg.*cannot be decoded"):
        train(config, source)


def test_labels_outside_classes_and_foreign_run_dirs(tmp_path):
    with pytest.raises(ValueError, match="10 classes.*classes=5"):
        train(_config(tmp_path / "a"), builtin_digits(), classes=5)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no kzoo run"):
        train(_config(tmp_path / "b"), builtin_digits())
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"


class _Explodes(StepsAt):
    def lr(self, step, epoch):
        return 0.01 if epoch == 0 else 1e30


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = _config(tmp_path / "run", weight_decay=0.0)
    config.schedule, config.epochs = _Explodes(0.0, (), 1.0), 3
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf).*epoch 2.*step 2"):
        train(config, builtin_digits(), model_fn=lambda classes: _no_bn_model(classes))
    assert json.load(open(tmp_path / "run" / "checkpoints" / "latest.json"))["step"] == 2


def _no_bn_model(classes):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Dense(64, activation="relu")(x)))


@pytest.mark.slow
def test_reduced_size_zfnet_learns_the_digits(tmp_path):
    # The AlexNet family at 64x64 with the paper's initialisation and renormalization.
    run_dir = str(tmp_path / "run")
    assert main(zfnet.RECIPE, ["--epochs", "10", "--run-dir", run_dir]) == 0
    history = open(os.path.join(run_dir, "history.csv")).read().split()[1:]
    losses = [float(row.split(",")[3]) for row in history]
    assert losses[-1] < 0.85 * losses[0]  # off the initial plateau (ln 10 = 2.30)
    assert read_metrics(run_dir)["val_top1_err"] < 0.7  # chance: 0.9; measured 0.55


def test_recipe_pipelines_follow_the_model_input():
    from kzoo.recipes.common import recipe_preprocess

    assert recipe_preprocess(overfeat.RECIPE, "overfeat_accurate", demo=False).crop == 221
    assert recipe_preprocess(overfeat.RECIPE, "overfeat_fast", demo=False).crop == 231
    assert recipe_preprocess(alexnet.RECIPE, "alexnet", demo=False, input_size=227).crop == 227
    demo = recipe_preprocess(alexnet.RECIPE, "alexnet", demo=True)
    assert (demo.crop, demo.resize, demo.center) == (96, 110, 110)


def test_recipe_trains_on_a_folder_of_class_images(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            tf.io.write_file(str(tmp_path / "data" / name / f"{i}.jpg"),
                             tf.io.encode_jpeg(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)))
    run_dir = str(tmp_path / "run")
    assert main(resnet_cifar.RECIPE, ["--data-dir", str(tmp_path / "data"), "--epochs", "1",
                                      "--batch-size", "8", "--run-dir", run_dir]) == 0
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["dataset"]["classes"] == 3 and config["dataset"]["train_size"] == 32
    assert read_metrics(run_dir)["steps"] == 4


def test_zfnet_filters_are_renormalized_after_every_engine_update(tmp_path):
    config = _config(tmp_path / "run", model="zfnet", schedule=StepsAt(50.0, (), 1.0), weight_decay=0.0,
                     preprocess=zfnet.RECIPE.preprocess.scaled(64))
    _, model = train(config, builtin_digits())
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        kernel = np.asarray(model.get_layer(name).kernel)
        rms = np.sqrt(np.mean(kernel**2, axis=(0, 1, 2)))
        assert rms.max() <= 0.1 + 1e-6, name
    # The same huge steps without the constraint push filters past the radius.
    free = _config(tmp_path / "free", model="zfnet", schedule=StepsAt(50.0, (), 1.0), weight_decay=0.0,
                   preprocess=zfnet.RECIPE.preprocess.scaled(64), model_options={"filter_radius": None})
    _, unconstrained = train(free, builtin_digits())
    kernel = np.asarray(unconstrained.get_layer("conv1").kernel)
    assert np.sqrt(np.mean(kernel**2, axis=(0, 1, 2))).max() > 0.1
