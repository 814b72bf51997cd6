"""What a new user sees first (issue 13): --help without TensorFlow, no TensorFlow log
lines, the paper's dataset in the demo's hint, one clear line for a finished run, the
learning rate in use and why."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def _commands():
    """Every `python -m` command of the package, found in the source (a list kept by hand
    missed voc2012 and overlap): packages with a __main__.py, modules with a __main__ guard
    (those a package's __main__.py runs are that package's command)."""
    import pathlib

    root = pathlib.Path(ROOT) / "kzoo"
    packages = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in root.rglob("__main__.py")}
    modules = {str(p.relative_to(ROOT))[:-3].replace("/", ".") for p in root.rglob("*.py")
               if p.name != "__main__.py" and 'if __name__ == "__main__"' in p.read_text(encoding="utf-8")}
    return tuple(sorted(packages | {m for m in modules if m.rsplit(".", 1)[0] not in packages}))


COMMANDS = _commands()

# Each command's --help, run as `python -m` runs it; then which heavy modules got imported.
HELP_SCRIPT = """
import runpy, sys
for command in sys.argv[1:]:
    sys.argv = [command, "--help"]
    try:
        runpy.run_module(command, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        assert exit_.code == 0, (command, exit_.code)
    print("LOADED", command, sorted(m for m in ("tensorflow", "keras", "keras_tuner") if m in sys.modules))
"""


def _python(code, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**environ, **(env or {})})


def test_every_help_loads_neither_tensorflow_nor_keras():
    done = _python(HELP_SCRIPT, *COMMANDS)
    assert done.returncode == 0, done.stderr
    loaded = [line for line in done.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded == [f"LOADED {command} []" for command in COMMANDS]
    assert done.stdout.count("usage: python -m kzoo.") == len(COMMANDS)
    assert done.stderr == ""  # no TensorFlow log line
    # the flag that shows TensorFlow's logs (kzoo.weights: on its `convert` command)
    assert done.stdout.count("--verbose") >= len(COMMANDS) - 1


def test_tensorflow_is_quiet_unless_asked():
    quiet = _python("from kzoo.utils.cli import quiet_tensorflow\nquiet_tensorflow(False)\n"
                    "import tensorflow as tf\nprint(float(tf.reduce_sum(tf.ones(3))))")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "3.0" and quiet.stderr == ""
    # --verbose and an explicit TF_CPP_MIN_LOG_LEVEL leave TensorFlow's logging (and loading) alone
    check = "import os, sys\nfrom kzoo.utils.cli import quiet_tensorflow\nquiet_tensorflow({})\n" \
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), 'tensorflow' in sys.modules)"
    assert _python(check.format(True)).stdout.split() == ["None", "False"]
    assert _python(check.format(False), env={"TF_CPP_MIN_LOG_LEVEL": "1"}).stdout.split() == ["1", "False"]


def test_the_python_api_is_as_quiet_as_the_commands_unless_asked():
    code = ("import kzoo\nmodel = kzoo.resnet20(classes=10)\nprint(model.count_params())\n"
            "trained = kzoo.load('resnet20', weights='digits')\nprint(trained.predict([[[0, 0, 0]]]).shape)")
    quiet = _python(code)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["271098", "(1,", "10)"] and quiet.stderr == ""  # no TensorFlow log line
    loud = _python(code, env={"TF_CPP_MIN_LOG_LEVEL": "0"})  # the user's own setting: TensorFlow's logs as they are
    assert loud.returncode == 0 and "oneDNN custom operations are on" in loud.stderr


def test_lazy_package_names():
    import kzoo
    import kzoo.models

    builders = [name for name in kzoo.__all__ if name not in (
        "create_model", "list_models", "load", "preprocess_input", "decode_predictions", "feature_extractor",
        "__version__")]
    assert builders == list(kzoo.registry.BUILDER_NAMES) == kzoo.list_models()  # one list, the same order
    assert set(kzoo.__all__) <= set(dir(kzoo))
    from kzoo import resnet20

    assert resnet20 is kzoo.models.resnet.resnet20 and kzoo.create_model.__module__ == "kzoo.registry"
    with pytest.raises(AttributeError, match="no attribute 'resnet21'"):
        kzoo.resnet21
    # submodules are attributes as when `import kzoo` imported them, and stay light until used
    fresh = _python("import sys, kzoo, kzoo.utils\nprint(kzoo.registry.__name__, kzoo.utils.cli.__name__, "
                    "'keras' in sys.modules)")
    assert fresh.stdout.split() == ["kzoo.registry", "kzoo.utils.cli", "False"], fresh.stderr


def test_each_recipe_names_its_papers_data():
    from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet
    from kzoo.recipes.common import paper_data_hint

    assert {r.name: r.dataset for r in (alexnet.RECIPE, zfnet.RECIPE, overfeat.RECIPE, resnet.RECIPE,
                                        resnet_cifar.RECIPE)} == {
        "alexnet": "imagenet2012", "zfnet": "imagenet2012", "overfeat": "imagenet2012",
        "resnet": "imagenet2012", "resnet_cifar": "cifar10"}
    assert "--dataset cifar10 " in paper_data_hint(resnet_cifar.RECIPE)


def test_demo_says_its_data_its_lr_and_once_that_it_finished(trained_run, copied_run, tmp_path, capsys):
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import main

    shared, out = trained_run("resnet_cifar", "--smoke")  # what the command printed
    run_dir = str(copied_run(shared, tmp_path, "run"))
    args = ["--smoke", "--run-dir", run_dir]
    out = out.replace(str(shared), run_dir)
    lines = out.splitlines()
    hint = "For the paper's data use --dataset cifar10 --data-dir DIR"
    assert lines[0].startswith("Training on the built-in demo data") and hint in lines[0]
    assert lines[-3].startswith("Done: top-1 error") and lines[-1].startswith(hint)
    assert lines[-2] == (f"Next: python -m kzoo.evaluate --run-dir {run_dir} (the papers' test views); python -m "
                         f"kzoo.predict IMAGE --run-dir {run_dir}; python -m kzoo.visualize curves {run_dir}")
    # smoke batch 8 against the paper's 128: lr 0.1 (§4.2) x 8/128
    assert ("Learning rate 0.00625 where the paper's schedule gives 0.1: every lr is scaled by batch 8 / the "
            "paper's batch 128 = 0.0625 (linear scaling).") in lines
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["lr_scale"] == 8 / 128
    with open(os.path.join(run_dir, "history.csv"), encoding="utf-8") as f:
        record = dict(zip(*[line.split(",") for line in f.read().split()[:2]]))
    assert float(record["lr"]) == pytest.approx(0.00625)
    # the bar's last values are the epoch's means, as in the summary line and history.csv
    bar_loss = re.findall(r" loss: ([0-9.e+-]+)", out)[-1]
    bar_err = re.findall(r" top1_err: ([0-9.e+-]+)", out)[-1]
    assert float(bar_loss) == pytest.approx(float(record["train_loss"]), abs=1e-4)
    assert float(bar_err) == pytest.approx(float(record["train_top1_err"]), abs=1e-4)
    assert re.findall(r" lr: ([0-9.e+-]+)", out)[-1] == "0.0063"

    assert main(resnet_cifar.RECIPE, args) == 0  # finished: said once, no "Resuming"
    again = capsys.readouterr().out
    assert "Resuming" not in again and "Learning rate" not in again
    assert again.count(f"{run_dir} has already finished (1 epoch, 2 steps): nothing to train. To train longer, "
                       f"rerun with --epochs N above 1; to start afresh, pick another --run-dir.") == 1


def test_weights_list_has_a_header_and_wraps_at_words():
    from kzoo.weights.__main__ import list_table

    data = "scikit-learn's handwritten digits, the built-in demo data (1,438 training images, 10 classes)"
    entries = {"resnet20": {"digits": {"data": data, "metrics": {"top1_err": 21.45, "top5_err": 0.84}}},
               "alexnet": {"x": {"data": "short", "metrics": {}}}}
    lines = list_table(entries, data_width=30)
    assert lines[0].split() == ["model", "weights", "trained", "on", "validation", "error", "(%)"]
    assert lines[1].rstrip() == "alexnet      x          short"
    assert lines[2].startswith("resnet20     digits     ") and lines[2].endswith(" top1_err 21.45, top5_err 0.84")
    column = [line[24:24 + 30].rstrip() for line in lines[2:]]
    assert all(len(piece) <= 30 for piece in column) and len(column) == 4
    assert " ".join(column) == data  # every word whole, none lost
    assert all(line[:24].strip() == "" for line in lines[3:])  # continuation lines


def test_summary_ends_with_the_command_that_trains_the_model(capsys):
    import importlib
    import shlex

    from kzoo import registry
    from kzoo.recipes.common import build_parser, run_from_args
    from kzoo.recipes.summary import summarize, train_command

    for name in registry.list_models():  # each command's recipe builds exactly that model
        words = shlex.split(train_command(registry.get_entry(name)))
        recipe = importlib.import_module(words[2]).RECIPE
        assert words[:2] == ["python", "-m"] and run_from_args(recipe, build_parser(recipe).parse_args(words[3:])).model == name
    assert train_command(registry.get_entry("plain110")) == "python -m kzoo.recipes.resnet_cifar --depth 110 --plain"
    lines = []
    summarize("resnet20", print_fn=lines.append)
    assert lines[-1].endswith("(random input). To train it: python -m kzoo.recipes.resnet_cifar --depth 20")
    from kzoo.recipes.summary import main

    with pytest.raises(SystemExit) as exit_:  # the name is checked after parsing (--help loads no Keras)
        main(["alexnt"])
    assert exit_.value.code == 2
    assert "error: Unknown model name 'alexnt'. Did you mean 'alexnet'?" in capsys.readouterr().err
