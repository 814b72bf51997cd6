"""The training engine and the recipes, end to end on the built-in digits."""

import dataclasses
import gc
import json
import os
import weakref

import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.sources import builtin_digits, image_folder, load_source
from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet
from kzoo.recipes.common import build_parser, main
from kzoo.train.engine import TrainConfig, TrainingDiverged, train
from kzoo.train.schedules import StepsAt


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("recipe, extra", [
    ("alexnet", ()), ("zfnet", ()), ("overfeat", ("--model", "accurate")), ("resnet", ("--depth", "18")),
    ("resnet_cifar", ()),  # resnet20: the run other tests share
])
def test_recipe_smoke_writes_a_complete_run_directory(trained_run, recipe, extra):
    run_dir, _ = trained_run(recipe, "--smoke", *extra)
    for name in ("config.json", "history.csv", "curves.png", "metrics.json", "checkpoints/latest.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "tensorboard"))
    metrics = read_metrics(run_dir)
    history = (run_dir / "history.csv").read_text().splitlines()
    last = dict(zip(history[0].split(","), history[-1].split(",")))
    assert metrics["steps"] == 2 and len(history) == 2 and int(last["step"]) == 2
    assert metrics["val_top1_err"] == pytest.approx(float(last["val_top1_err"]))
    # --smoke validates on one batch of 8: the error counts whole images
    assert metrics["val_top1_err"] * 8 == pytest.approx(round(metrics["val_top1_err"] * 8), abs=1e-9)


def test_print_schedule_states_the_paper(capsys):
    assert main(alexnet.RECIPE, ["--print-schedule"]) == 0
    text = capsys.readouterr().out
    for fact in ("128", "lr 0.01, divided by 10", "at most 3 times", "0.0005", "PCA colour noise std 0.1", "§5"):
        assert fact in text
    assert main(resnet_cifar.RECIPE, ["--print-schedule", "--depth", "110"]) == 0
    assert "lr 0.01 until training error < 80%" in capsys.readouterr().out
    assert main(alexnet.RECIPE, ["--print-schedule", "--option", "towers=1", "--option", "lrn=false"]) == 0
    assert "  model                        alexnet (towers=1, lrn=False)\n" in capsys.readouterr().out


def _documented_demo_errors(recipe):
    """The demo errors docs/training.md gives for `python -m kzoo.recipes.RECIPE`, by CPU kind
    ({"Intel": 10.31, "AMD": 18.38})."""
    import re

    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "training.md")
    row = next(line for line in open(docs, encoding="utf-8") if line.startswith(f"| `python -m kzoo.recipes.{recipe}`"))
    return {kind: float(value) for value, kind in re.findall(r"([0-9.]+)% \((Intel|AMD)", row.split("|")[3])}


@pytest.mark.large
@pytest.mark.parametrize("recipe, epochs", [("resnet_cifar", 5), ("alexnet", 10)])
def test_the_readme_demos_learn_the_digits_to_the_documented_figure(recipe, epochs, tmp_path):
    """Each demo as a new user runs it (its own process, no flags), and the figure the docs give for it."""
    import subprocess
    import sys

    run_dir = str(tmp_path / "run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", f"kzoo.recipes.{recipe}", "--run-dir", run_dir], cwd=root,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    history = [line.split(",") for line in open(os.path.join(run_dir, "history.csv")).read().split()[1:]]
    losses = [float(row[3]) for row in history]
    assert len(history) == epochs and losses[-1] < 0.5 * losses[0]
    error = round(100 * read_metrics(run_dir)["val_top1_err"], 2)
    assert f"Done: top-1 error {error:.2f}%" in done.stdout
    documented = _documented_demo_errors(recipe)
    assert "Intel" in documented
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " amx_tile" in flags:  # the kind the Intel figure was measured on, with this code: exactly it
        assert error == documented["Intel"]
    else:  # measured on an earlier commit: within a point of the documented figures
        assert min(documented.values()) - 1 <= error <= max(documented.values()) + 1, (error, documented)


def test_a_run_without_its_config_json_is_named_not_called_no_run(trained_run, copied_run, tmp_path, capsys):
    run_dir = copied_run(trained_run("resnet_cifar", "--smoke")[0], tmp_path)
    (run_dir / "config.json").unlink()
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(SystemExit) as exit_:
        main(resnet_cifar.RECIPE, ["--smoke", "--run-dir", str(run_dir), "--epochs", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: run directory {str(run_dir)!r} holds checkpoints but no config.json, which names the run's model, "
        f"data and settings, so kzoo cannot tell whether this command continues it: restore config.json from a copy "
        f"of the run directory, or pick a new --run-dir.")
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written, nothing set aside


def test_rerun_resumes_and_other_models_are_refused(trained_run, copied_run, tmp_path, capsys):
    from tensorflow.python.framework.config import is_op_determinism_enabled

    run_dir = str(copied_run(trained_run("resnet_cifar", "--smoke")[0], tmp_path))  # a finished epoch
    args = ["--smoke", "--run-dir", run_dir, "--depth", "20"]
    assert not is_op_determinism_enabled()  # on while training only: else no later model compiles with XLA
    assert main(resnet_cifar.RECIPE, [*args, "--epochs", "2"]) == 0  # continues: one more epoch
    assert not is_op_determinism_enabled()
    finished = read_metrics(run_dir)
    assert (finished["steps"], finished["steps_this_run"]) == (4, 2)  # resumed after the shared run's 2 steps
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


def test_flags_the_built_in_data_would_ignore_are_refused(tmp_path):
    for kwargs, message in [
        (dict(dataset="digits", data_dir=str(tmp_path)), r"--dataset digits is built in: --data-dir would be ignored"),
        (dict(dataset="shapes", download=True), r"--dataset shapes is built in: --download would be ignored"),
        (dict(download=True), r"--download lets tensorflow-datasets prepare a --dataset; give --dataset NAME"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_source(**kwargs)


def test_a_run_directory_inside_its_data_folder_is_refused(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            tf.io.write_file(str(tmp_path / "data" / name / f"{i}.png"), tf.io.encode_png(np.zeros((8, 8, 3), "uint8")))
    with pytest.raises(SystemExit) as exit_:
        main(resnet_cifar.RECIPE, ["--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "data" / "run")])
    assert exit_.value.code == 2 and "lies inside --data-dir" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a", "b"]  # nothing written there


def test_a_run_that_cannot_fit_in_memory_is_refused_before_anything_is_written(tmp_path, capsys):
    """Its lower bound (weights, momentum, one batch's layer outputs, from a shape-only build)
    against the free memory: the flags to lower are named, nothing is allocated or written."""
    from kzoo.recipes.common import Run, recipe_config
    from kzoo.train.engine import check_memory

    digits = builtin_digits()
    config = recipe_config(resnet_cifar.RECIPE, Run(input_size=64, run_dir=str(tmp_path / "r")), digits)
    check_memory(config, 10, available=2**30)  # resnet20 at 64 px, batch 64: ~0.7 GiB
    with pytest.raises(ValueError) as err:
        check_memory(config, 10, available=2**27)
    # 271,098 weights (BN statistics included) x 2 x 4 B; every layer's 64 px outputs x 64 images x 4 B
    assert str(err.value) == ("resnet20 at 64 px, batch 64, needs at least 0.7 GiB (weights and momentum 0.0 GiB for "
                              "271,098 parameters; one batch's layer outputs 0.7 GiB), but 0.1 GiB of memory is free: "
                              "lower --batch-size or --input-size.")
    with pytest.raises(SystemExit) as exit_:
        main(alexnet.RECIPE, ["--option", "fc_units=1000000000", "--run-dir", str(tmp_path / "huge")])
    assert exit_.value.code == 2 and not (tmp_path / "huge").exists()
    assert "1,000,001,036,002,334,090 parameters" in capsys.readouterr().err


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
    # step 3 (lr 1e30) sends the weights to inf; step 4's loss is the first that is not finite
    with pytest.raises(TrainingDiverged, match=r"^loss became nan at step 4 \(epoch 2, lr 1e\+30\); stopped\. The last "
                                               r"good checkpoint is kept: step 2 in .*checkpoints\. Lower the learning "
                                               r"rate or check the data\.$"):
        train(config, builtin_digits(), model_fn=lambda classes: _no_bn_model(classes))
    assert json.load(open(tmp_path / "run" / "checkpoints" / "latest.json"))["step"] == 2


def _no_bn_model(classes):
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(keras.layers.Dense(64, activation="relu")(x)))


def _live_train_steps():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, tf.Graph) and getattr(o, "name", "") == "train_step")


def test_a_finished_run_leaves_no_traced_step_or_weights_behind(tmp_path):
    # tf.distribute's all-reduce registered each trace's custom gradient for good: every
    # run's train step and weights stayed in memory (150-200 MB per smoke run of a recipe).
    before = _live_train_steps()
    _, model = train(_config(tmp_path / "run"), builtin_digits(), model_fn=_no_bn_model)
    weights = weakref.ref(model.trainable_variables[0].value)
    del model
    assert _live_train_steps() == before and weights() is None


@pytest.mark.large
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


def test_recipe_trains_on_a_folder_of_class_images(tmp_path, capsys):
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
    out = capsys.readouterr().out
    assert "Training on data: 32 training and 4 validation images, 3 classes, at 32 px.\n" in out  # said first
    assert f"Next: python -m kzoo.evaluate --run-dir {run_dir} " in out
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


def test_a_typed_run_records_its_builder_options_and_refuses_others(tmp_path, capsys):
    from kzoo.recipes.common import Run, train_recipe

    run_dir = tmp_path / "run"
    run = Run(model="resnet20", options={"shortcut": "B"}, smoke=True, input_size=8, run_dir=run_dir)
    assert run.run_dir == str(run_dir)
    assert train_recipe(resnet_cifar.RECIPE, run)["steps"] == 2
    config = json.load(open(run_dir / "config.json"))
    assert config["config"]["model_options"] == {"shortcut": "B"}
    assert config["identity"]["model"] == "resnet20" and config["identity"]["model_options"] == {"shortcut": "B"}
    finished = read_metrics(run_dir)
    cli = ["--smoke", "--input-size", "8", "--run-dir", str(run_dir)]
    assert main(resnet_cifar.RECIPE, [*cli, "--option", "shortcut=B"]) == 0  # the same run: finished, kept
    assert read_metrics(run_dir) == finished
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # other options: another run
        main(resnet_cifar.RECIPE, [*cli, "--option", "shortcut=C"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"run directory {str(run_dir)!r} holds another run" in err and "'shortcut': 'C'" in err
    with pytest.raises(ValueError, match="holds another run"):
        train_recipe(resnet_cifar.RECIPE, dataclasses.replace(run, options={}))
    assert read_metrics(run_dir) == finished
    assert json.load(open(run_dir / "config.json")) == config


def test_a_builders_default_given_explicitly_is_the_same_run(trained_run, copied_run, tmp_path, capsys):
    """resnet20's shortcut is A by default: `--option shortcut=A` resumes the run made without
    it (the resolved options are compared); another shortcut is another run."""
    run_dir = str(copied_run(trained_run("resnet_cifar", "--smoke", "--input-size", "8")[0], tmp_path))
    finished = read_metrics(run_dir)
    cli = ["--smoke", "--input-size", "8", "--run-dir", run_dir]
    assert main(resnet_cifar.RECIPE, [*cli, "--option", "shortcut=A"]) == 0
    assert "has already finished" in capsys.readouterr().out and read_metrics(run_dir) == finished
    with pytest.raises(SystemExit) as exit_:
        main(resnet_cifar.RECIPE, [*cli, "--option", "shortcut=B"])
    assert exit_.value.code == 2 and "holds another run" in capsys.readouterr().err


def test_recipe_options_merge_under_the_runs(tmp_path):
    from kzoo.recipes.common import Run, recipe_config, run_from_args

    digits = builtin_digits()
    assert recipe_config(alexnet.RECIPE, Run(), digits).model_options == {"init": "caffe"}  # the demo's
    assert recipe_config(alexnet.RECIPE, Run(options={"towers": 1}), digits).model_options == {
        "init": "caffe", "towers": 1}
    assert recipe_config(alexnet.RECIPE, Run(options={"init": "paper"}), digits).model_options == {"init": "paper"}
    for name in ("a", "b"):  # not the demo data: no demo options, the paper's crop
        (tmp_path / name).mkdir()
        for i in range(2):
            tf.io.write_file(str(tmp_path / name / f"{i}.png"), tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)))
    folder = image_folder(tmp_path, val_fraction=0.5)
    config = recipe_config(alexnet.RECIPE, Run(options={"towers": 1}), folder)
    assert (config.model_options, config.preprocess.crop) == ({"towers": 1}, 224)

    def parse(argv):  # the recipe's flags choose the model; --option goes over the options they set
        run = run_from_args(resnet.RECIPE, build_parser(resnet.RECIPE).parse_args(argv))
        return run.model, run.options

    assert parse([]) == ("resnet50", {"shortcut": "B"})
    assert parse(["--depth", "18", "--option", "shortcut=C", "--option", "stride_placement=v1.5"]) == (
        "resnet18", {"shortcut": "C", "stride_placement": "v1.5"})
    assert parse(["--depth", "34", "--plain"]) == ("plain34", {})
    default = recipe_config(resnet.RECIPE, Run(options={"shortcut": "A"}), folder)  # no model: the recipe's
    assert (default.model, default.model_options) == ("resnet50", {"shortcut": "A"})


def test_a_run_checks_its_fields_as_the_command_line_does():
    from kzoo.recipes.common import Run

    for fields, message in [
        (dict(epochs=0), "argument --epochs: expected an integer >= 1, got 0"),
        (dict(batch_size=2.5), "argument --batch-size: expected an integer >= 1, got 2.5"),
        (dict(seed=-1), "argument --seed: expected an integer >= 0, got -1"),
        (dict(checkpoint_every=True), "argument --checkpoint-every: expected an integer >= 0, got True"),
        (dict(smoke="yes"), "argument --smoke: expected True or False, got 'yes'"),
        (dict(strategy="gpu"), "argument --strategy: invalid choice: 'gpu' (choose from 'default', 'mirrored', "
                               "'multiworker')"),
        (dict(model="alexnet", input_size=63),  # the CLI's line (test_cli_errors)
         "argument --input-size: 63 is too small for alexnet; expected an integer >= 64 (the paper uses 224)."),
        (dict(model="resnet20", options={"stride_placement": "v1.5"}),
         "argument --option: resnet20 has no option 'stride_placement'; its options are shortcut."),
        (dict(run_dir=""), "argument --run-dir: expected a folder, got ''; leave --run-dir out for the default."),
        (dict(data_dir=" "), "argument --data-dir: expected a folder, got ' '; leave --data-dir out for the default."),
    ]:
        with pytest.raises(ValueError) as err:
            Run(**fields)
        assert str(err.value) == message


def test_a_tanh_run_with_pca_std_records_both_and_loads_as_trained(tmp_path, capsys):
    """--option activation=tanh and --pca-std reach config.json; kzoo.load rebuilds the tanh
    net (the checkpoint fits only that graph's layer names) with the run's pipeline; a resume
    with other colour noise is refused, the run untouched."""
    import keras

    import kzoo

    run_dir = tmp_path / "run"
    cli = ["--smoke", "--input-size", "64", "--run-dir", str(run_dir), "--option", "activation=tanh"]
    assert main(alexnet.RECIPE, [*cli, "--pca-std", "0"]) == 0
    config = json.load(open(run_dir / "config.json"))
    assert config["identity"]["model_options"] == {"init": "caffe", "activation": "tanh"}  # the demo's init, ours
    assert config["config"]["preprocess"]["pca"] == 0.0
    trained = kzoo.load(run_dir=str(run_dir))
    assert trained.preprocessing.pca == 0.0
    for name in ("relu1", "relu5", "relu7"):
        layer = trained.model.get_layer(name)
        assert isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "tanh", name
    finished = read_metrics(run_dir)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(alexnet.RECIPE, cli)  # the recipe's own 0.1
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: run directory {str(run_dir)!r} trains with --pca-std 0 (its config.json); this command gives 0.1. "
        f"Rerun with --pca-std 0 to resume it, or pick a new --run-dir.")
    assert read_metrics(run_dir) == finished and json.load(open(run_dir / "config.json")) == config
    assert main(alexnet.RECIPE, ["--print-schedule", "--pca-std", "0.05"]) == 0
    assert "PCA colour noise std 0.05" in capsys.readouterr().out


def _colour_images(n=96, size=40, seed=0):
    from kzoo.data.sources import Source

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = (np.arange(n) % 2).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return Source(name="colours", train=ds, val=ds, train_size=n, val_size=n, class_names=["a", "b"], builtin=True)


def test_pca_std_sets_the_colour_noise_of_the_pipeline(tmp_path):
    """AlexNet §4.1 measured on the pipeline's output: --pca-std 0.1 adds one colour per image
    and pass, 255 * sum_i p_i alpha_i lambda_i with alpha_i ~ N(0, 0.1) recovered through the
    run's own PCA (numpy); everything else (crops, flips) is --pca-std 0's output exactly."""
    from kzoo.recipes.common import Run, recipe_config, run_from_args
    from kzoo.train.engine import _run_stats, _train_dataset

    source = _colour_images()

    def parse(recipe, argv):
        run = run_from_args(recipe, build_parser(recipe).parse_args(argv))
        return recipe_config(recipe, run, source).preprocess.pca

    assert [parse(alexnet.RECIPE, []), parse(resnet.RECIPE, []), parse(zfnet.RECIPE, []),
            parse(resnet_cifar.RECIPE, [])] == [0.1, 0.1, 0.0, 0.0]  # the recipes' own
    assert [parse(alexnet.RECIPE, ["--pca-std", "0"]), parse(zfnet.RECIPE, ["--pca-std", "0.2"])] == [0.0, 0.2]
    batches = {}
    for std in (0.0, 0.1):
        run = Run(pca_std=std, input_size=64, batch_size=32, run_dir=str(tmp_path / "run"))
        config = recipe_config(alexnet.RECIPE, run, source)
        stats = _run_stats(config, source)
        for epoch in (0, 1):
            ds = _train_dataset(source, config, stats, epoch, 0, 32)
            batches[std, epoch] = np.concatenate([images.numpy() for images, _ in ds])
    alphas = []
    for epoch in (0, 1):
        shift = batches[0.1, epoch] - batches[0.0, epoch]  # (images, 64, 64, 3)
        colour = shift.mean(axis=(1, 2))
        np.testing.assert_allclose(shift, np.broadcast_to(colour[:, None, None], shift.shape), atol=1e-3)
        alphas.append(colour @ stats["eigvecs"] / (255.0 * stats["eigvals"]))
    alphas = np.stack(alphas)  # (epoch, image, component)
    assert 0.085 < alphas.std() < 0.115 and abs(alphas.mean()) < 0.015  # 576 draws of N(0, 0.1)
    assert np.abs(alphas[0] - alphas[1]).min() > 0  # redrawn every pass


def test_crops_ten_reaches_the_pipeline_config_and_identity(tmp_path, capsys):
    """--crops ten (ZFNet §3): the run's Preprocess gets it, and every image of the engine's
    training dataset is one of the ten corner/centre crops (flipped or not) of a source image,
    resized and mean-free as numpy slices them; the default stays random. config.json records it,
    and since the crops change what a run sees, they are part of its identity: a ten-crop run
    resumes only with --crops ten, and random-crop runs keep the identity they had before."""
    from kzoo.recipes.common import Run, recipe_config, run_from_args
    from kzoo.train.engine import _claim_run_dir, _run_stats, _train_dataset

    source = _colour_images(n=16)

    def config(argv):
        run = run_from_args(zfnet.RECIPE, build_parser(zfnet.RECIPE).parse_args([*argv, "--run-dir", run_dir]))
        return recipe_config(zfnet.RECIPE, run, source)

    run_dir = str(tmp_path / "ten")
    ten, random = config(["--crops", "ten"]), config([])
    assert (ten.preprocess.crops, random.preprocess.crops) == ("ten", "random")
    p = ten.preprocess
    assert (p.resize, p.center, p.crop, p.flip) == (73, 73, 64, True)  # the demo's ZFNet pipeline, scaled to 64
    with _claim_run_dir(ten, source):  # a new run: config.json written
        pass
    stats = _run_stats(ten, source)
    images = np.stack([image for image, _ in source.train.as_numpy_iterator()])
    resized = np.clip(np.round(tf.image.resize(images, (73, 73), antialias=True).numpy()), 0, 255) - stats["mean"]
    k, c = 64, (73 - 64) // 2
    corners = [resized[:, :k, :k], resized[:, :k, -k:], resized[:, -k:, :k], resized[:, -k:, -k:],
               resized[:, c : c + k, c : c + k]]
    references = np.concatenate(corners + [v[:, :, ::-1] for v in corners]).reshape(160, -1)  # view-major

    def matched(cfg):
        out = np.concatenate([x.numpy() for x, _ in _train_dataset(source, cfg, stats, 0, 0, 8)]).reshape(16, -1)
        distance = np.abs(out[:, None, :] - references[None]).max(-1)  # (16 outputs, 160 references)
        return distance.min(1) < 1e-3, distance.argmin(1) // 16

    hit, views = matched(ten)
    assert hit.all() and len(set(views)) >= 5  # each one of the ten; over 16 images, several of them
    hit, _ = matched(random)
    assert hit.sum() <= 4  # random: 10 x 10 positions x 2 flips, 10 of them the ten
    recorded = json.load(open(os.path.join(run_dir, "config.json")))
    assert recorded["config"]["preprocess"]["crops"] == "ten" and recorded["identity"]["crops"] == "ten"
    with _claim_run_dir(ten, source):  # the same run resumes
        pass
    with pytest.raises(ValueError, match="holds another run .*'crops': 'ten'"):
        with _claim_run_dir(random, source):
            pass
    run_dir = str(tmp_path / "random")
    assert "crops" not in config([]).identity()  # as before the option: older runs still resume
    with _claim_run_dir(config([]), source):
        pass
    with pytest.raises(ValueError, match="holds another run"):
        with _claim_run_dir(config(["--crops", "ten"]), source):
            pass
    with pytest.raises(ValueError, match=r"argument --crops: invalid choice: 'five' \(choose from 'random', 'ten'\)"):
        Run(crops="five")
    with pytest.raises(SystemExit):
        build_parser(zfnet.RECIPE).parse_args(["--crops", "five"])
    assert "invalid choice: 'five'" in capsys.readouterr().err
    assert main(zfnet.RECIPE, ["--print-schedule", "--crops", "ten"]) == 0
    assert "224 corner and centre crops (ten), flips" in capsys.readouterr().out


def test_val_split_reaches_the_config_and_the_identity_only_when_given(tmp_path, capsys):
    """--val-split N (ResNet §4.2's 45k/5k): a positive number, checked where it is given;
    recorded in config.json and in the run's identity (a split run resumes only with its split),
    while runs without it keep the identity they had before the option; an N that leaves no
    training image is refused before the run directory is made."""
    from kzoo.data.sources import hold_out
    from kzoo.recipes.common import Run, recipe_config, run_dir_for
    from kzoo.train.engine import _claim_run_dir

    with pytest.raises(ValueError, match=r"argument --val-split: expected an integer >= 1, got 0"):
        Run(val_split=0)
    with pytest.raises(SystemExit):
        build_parser(resnet_cifar.RECIPE).parse_args(["--val-split", "-5"])
    assert "argument --val-split: expected an integer >= 1, got '-5'" in capsys.readouterr().err
    source = builtin_digits()
    run_dir = str(tmp_path / "split")
    split = recipe_config(resnet_cifar.RECIPE, Run(val_split=300, run_dir=run_dir), hold_out(source, 300))
    whole = recipe_config(resnet_cifar.RECIPE, Run(run_dir=run_dir), source)
    assert split.val_split == 300 and split.identity()["val_split"] == 300
    assert set(whole.identity()) == {"model", "model_options", "crop", "seed", "batch_size"}  # as before
    assert run_dir_for(resnet_cifar.RECIPE, Run(val_split=300), source) == os.path.join(
        "runs", "resnet_cifar-resnet20-digits-val300")  # its own default folder
    with _claim_run_dir(split, hold_out(source, 300)):
        pass
    recorded = json.load(open(os.path.join(run_dir, "config.json")))
    assert recorded["config"]["val_split"] == 300 and recorded["identity"]["val_split"] == 300
    assert (recorded["dataset"]["train_size"], recorded["dataset"]["val_size"]) == (1438 - 300, 300)
    with pytest.raises(ValueError, match="holds another run .*'val_split': 300"):
        with _claim_run_dir(whole, source):
            pass
    capsys.readouterr()
    too_many = str(tmp_path / "too-many")
    with pytest.raises(SystemExit) as exit_info:
        main(resnet_cifar.RECIPE, ["--val-split", "1438", "--run-dir", too_many])
    assert exit_info.value.code == 2 and not os.path.exists(too_many)
    assert "[1, 1437] ('digits' has 1438 training images" in capsys.readouterr().err
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(resnet_cifar.RECIPE, ["--smoke", "--input-size", "8", "--val-split", "100",
                                          "--run-dir", str(tmp_path / "held")]) == 0
    assert not [w for w in caught if "deterministic" in str(w.message)]
    done = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Done:")]
    assert len(done) == 1 and " on 100 held-out training images of digits. Run directory: " in done[0]


def _png_folder(root, shade, count=8):
    """Two classes of `count` flat 12x12 PNGs: class a at grey `shade`, class b at 255 - shade."""
    for c, value in (("a", shade), ("b", 255 - shade)):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            tf.io.write_file(str(root / c / f"{i}.png"), tf.io.encode_png(np.full((12, 12, 3), value, "uint8")))
    return root


def test_a_folders_fingerprint_follows_its_content_not_its_place(tmp_path):
    first = image_folder(_png_folder(tmp_path / "one" / "data", 40), val_fraction=0.25)
    same = image_folder(_png_folder(tmp_path / "two" / "data", 40), val_fraction=0.25)
    other = image_folder(_png_folder(tmp_path / "three" / "data", 41), val_fraction=0.25)
    assert first.fingerprint == same.fingerprint and len(first.fingerprint) == 32
    assert other.fingerprint != first.fingerprint  # same names, sizes and classes; other pixels
    assert (other.train_size, other.val_size) == (first.train_size, first.val_size) == (12, 4)


def test_a_run_resumed_on_other_data_says_so_and_keeps_its_statistics(tmp_path, capsys):
    run = tmp_path / "run"
    config = _config(run, steps_per_epoch=1, val_steps=1, batch_size=4)
    train(config, image_folder(_png_folder(tmp_path / "one" / "data", 40), val_fraction=0.25))
    recorded = json.loads((run / "config.json").read_text())
    stats = run / recorded["stats"]
    assert recorded["dataset"]["fingerprint"] and stats.is_file()
    before = stats.read_bytes()
    capsys.readouterr()
    # another folder of the same name and size: the run's mean stays, and the change is said
    train(dataclasses.replace(config, epochs=2), image_folder(_png_folder(tmp_path / "two" / "data", 200),
                                                              val_fraction=0.25))
    err = capsys.readouterr().err
    assert (f"warning: the data under run {str(run)!r} has changed since it started (their content differs); it "
            f"resumes on the data given now, with the mean and colour statistics it started with "
            f"({recorded['stats']})") in err
    assert stats.read_bytes() == before and sorted(p.name for p in stats.parent.iterdir()) == [stats.name]
    # images added: the counts are named
    data = _png_folder(tmp_path / "two" / "data", 200, count=12)
    train(dataclasses.replace(config, epochs=3), image_folder(data, val_fraction=0.25))
    assert "(12 -> 18 training images; 4 -> 6 validation images; their content differs)" in capsys.readouterr().err
    # the data it started on, from another place: nothing said (content, not place)
    train(dataclasses.replace(config, epochs=4), image_folder(_png_folder(tmp_path / "three" / "data", 40),
                                                              val_fraction=0.25))
    err = capsys.readouterr().err
    assert "changed" not in err and json.loads((run / "metrics.json").read_text())["epochs_run"] == 4


def test_damaged_statistics_and_metrics_are_recovered_or_named(tmp_path, capsys):
    import kzoo

    run = tmp_path / "run"
    data = _png_folder(tmp_path / "data", 40)
    config = _config(run, steps_per_epoch=1, val_steps=1, batch_size=4)
    metrics, _ = train(config, image_folder(data, val_fraction=0.25))
    stats = run / json.loads((run / "config.json").read_text())["stats"]
    good = stats.read_bytes()
    stats.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError) as err:
        kzoo.load(run_dir=str(run))
    assert str(err.value).startswith(f"the statistics file {stats} is damaged (")
    assert str(err.value).endswith("; delete it and rerun the training command, which computes it again from the "
                                   "same data")
    capsys.readouterr()
    train(dataclasses.replace(config, epochs=2), image_folder(data, val_fraction=0.25))  # recomputed, and said
    assert f"warning: the statistics file {stats} is damaged (" in capsys.readouterr().err
    assert stats.read_bytes() == good  # the same data gives the same statistics
    # a finished run's metrics.json cut short: written again from the checkpoint's history
    kept = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text('{"top1_err": 0.')
    again, _ = train(dataclasses.replace(config, epochs=2), image_folder(data, val_fraction=0.25))
    assert f"warning: {run / 'metrics.json'} is damaged; writing it again" in capsys.readouterr().err
    rewritten = json.loads((run / "metrics.json").read_text())
    for key in ("val_top1_err", "val_loss", "train_loss", "epochs_run", "steps"):
        assert rewritten[key] == kept[key] == again[key]
    assert kept["epochs_run"] == 2 and metrics["epochs_run"] == 1


@pytest.mark.large  # two epochs of AlexNet (~30 s); the default tier checks the glorot start's values
def test_a_keras_users_fit_of_alexnet_learns_from_the_first_steps_with_glorot_init():
    """The paper's start (N(0, 0.01), biases 1) sits at chance through a plain model.fit's
    first epoch; init="glorot" (Keras' own start) is offered for that and learns in it."""
    import keras
    from sklearn.datasets import load_digits

    import kzoo

    digits = load_digits()
    x = np.repeat(np.round(digits.images * 255 / 16)[..., None], 3, -1).astype("float32")
    x = tf.image.resize(x, (64, 64)).numpy()
    x -= x.mean((0, 1, 2))
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], digits.target[order]
    accuracy = {}
    for init in ("paper", "glorot"):
        keras.utils.set_random_seed(0)
        model = kzoo.alexnet(classes=10, input_shape=(64, 64, 3), init=init)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x[:1438], y[:1438], batch_size=32, epochs=1, verbose=0, validation_data=(x[1438:], y[1438:]))
        accuracy[init] = history.history["val_accuracy"][-1]
    assert accuracy["paper"] < 0.2 and accuracy["glorot"] > 0.4, accuracy  # chance: 0.1; measured 0.08, 0.56


def test_a_schedule_that_ends_before_the_epochs_asked_says_so(tmp_path, capsys):
    schedule = StepsAt(0.1, (), 1.0, unit="step", stop_at=3)
    metrics, _ = train(_config(tmp_path / "run", schedule=schedule, epochs=5, verbose=1), builtin_digits())
    assert (metrics["epochs_run"], metrics["steps"]) == (2, 4)  # 2 steps per epoch: stops past step 3
    out = capsys.readouterr().out
    assert ("The schedule ended at step 4 (epoch 2 of the 5 asked; lr 0.1, x1 at steps , stop at step 3): a larger "
            "--epochs does not extend it.") in out
