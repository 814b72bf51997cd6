"""ResNet's Figs. 1, 4, 6 (issue 16): the training error every N steps (RUN/steps.csv), exact
across a resume, the first step below a target error (AlexNet Fig. 1), and
`python -m kzoo.visualize curves`, on short real runs of the digits."""

import csv
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from kzoo.data.sources import builtin_digits
from kzoo.recipes import resnet_cifar
from kzoo.recipes.common import Run, main, recipe_config
from kzoo.train import engine, runlog
from kzoo.train.engine import train
from kzoo.visualize import curves
from kzoo.visualize.run import main as visualize_main

BATCH, STEPS, EPOCHS, EVERY = 8, 6, 2, 3  # --smoke's batch; 12 steps, a row every 3
ARGS = ["--smoke", "--input-size", "8", "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS),
        "--log-every", str(EVERY), "--target-error", "0.9"]


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


class Crash(Exception):
    pass


class CrashAfter:
    """The recipe's schedule, in a process that dies after `steps` steps (a kill, in-process)."""

    def __init__(self, schedule, steps):
        self.schedule, self.left = schedule, steps

    def on_step_end(self, step, train_error):
        self.left -= 1
        if not self.left:
            raise Crash
        return self.schedule.on_step_end(step, train_error)

    def __getattr__(self, name):  # the rest is the schedule's (not dunders: copy.deepcopy probes them)
        if name.startswith("__") or "schedule" not in vars(self):
            raise AttributeError(name)
        return getattr(self.schedule, name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short real runs of ResNet's CIFAR recipe (Fig. 6's pair): resnet20 straight
    through; plain20 killed after step 11 and resumed. Checkpoints at steps 4, 6, 8: the
    killed process wrote rows 3, 6, 9 and resumes at step 8, so row 9 must be dropped and
    the window since row 6 (steps 7, 8) must come back from the checkpoint."""
    root = tmp_path_factory.mktemp("curves")
    assert main(resnet_cifar.RECIPE, [*ARGS, "--run-dir", str(root / "resnet20")]) == 0
    plain = root / "plain20"
    run = Run(model="plain20", smoke=True, input_size=8, epochs=EPOCHS, steps_per_epoch=STEPS, log_every=EVERY,
              target_error=0.9, checkpoint_every=4, run_dir=plain)
    config = recipe_config(resnet_cifar.RECIPE, run, builtin_digits())
    config.schedule = CrashAfter(config.schedule, 11)
    with pytest.raises(Crash):
        train(config, builtin_digits())
    killed = {"rows": [int(r["step"]) for r in read_csv(plain / "steps.csv")],
              "checkpoint": json.loads((plain / "checkpoints" / "latest.json").read_text())["step"]}
    assert main(resnet_cifar.RECIPE, [*ARGS, "--plain", "--checkpoint-every", "4", "--run-dir", str(plain)]) == 0
    return {"resnet20": root / "resnet20", "plain20": plain, "killed": killed}


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_steps_csv_rows_are_the_running_error_of_their_steps(runs, name):
    run_dir = runs[name]
    rows = read_csv(run_dir / "steps.csv")
    assert list(rows[0]) == ["step", "epoch", "train_top1_err", "train_loss", "lr"]
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]  # each step once, resumed or not
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2]
    errors = np.array([float(r["train_top1_err"]) for r in rows])
    # A row counts the wrong examples of its EVERY batches of BATCH: whole multiples of 1/24.
    wrong = errors * EVERY * BATCH
    np.testing.assert_allclose(wrong, np.round(wrong), atol=1e-9)
    assert ((errors >= 0) & (errors <= 1)).all()
    assert all(float(r["lr"]) == pytest.approx(0.1 * BATCH / 128) for r in rows)  # §4.2's 0.1, linearly scaled
    # The rows tile each epoch: their mean is the epoch's training error and loss in history.csv
    # (for plain20's row 9 only if steps 7 and 8 came back from the checkpoint).
    history = read_csv(run_dir / "history.csv")
    for epoch, record in enumerate(history, 1):
        mine = [r for r in rows if int(r["epoch"]) == epoch]
        for key in ("train_top1_err", "train_loss"):
            assert np.mean([float(r[key]) for r in mine]) == pytest.approx(float(record[key]), rel=1e-9), key
    assert int(history[-1]["step"]) == STEPS * EPOCHS


def test_the_resumed_run_dropped_the_rows_it_repeated(runs):
    assert runs["killed"] == {"rows": [3, 6, 9], "checkpoint": 8}
    assert metrics(runs["plain20"])["steps_this_run"] == 4


def test_first_step_below_matches_the_logs(runs):
    for name in ("resnet20", "plain20"):
        rows = read_csv(runs[name] / "steps.csv")
        history = read_csv(runs[name] / "history.csv")
        step = next((int(r["step"]) for r in rows if float(r["train_top1_err"]) < 0.9), None)
        epoch = next((int(r["epoch"]) for r in history if float(r["train_top1_err"]) < 0.9), None)
        assert metrics(runs[name])["first_step_below"] == {"level": 0.9, "step": step, "epoch": epoch}


def test_first_below_rules():
    rows = [{"step": 3, "train_top1_err": 0.5}, {"step": 6, "train_top1_err": 0.2}, {"step": 9, "train_top1_err": 0.1}]
    history = [{"epoch": 1, "step": 6, "train_top1_err": 0.35}, {"epoch": 2, "step": 12, "train_top1_err": 0.15}]
    assert runlog.first_below(0.25, rows, history) == {"level": 0.25, "step": 6, "epoch": 2}
    assert runlog.first_below(0.2, rows, history) == {"level": 0.2, "step": 9, "epoch": 2}  # below, not equal
    assert runlog.first_below(0.05, rows, history) == {"level": 0.05, "step": None, "epoch": None}
    assert runlog.first_below(0.4, [], history) == {"level": 0.4, "step": 6, "epoch": 1}  # no rows: the epoch's end
    # the rows stop (at step 6) before the error got below: the step is that epoch's end, as with no rows
    assert runlog.first_below(0.2, rows[:2], history) == {"level": 0.2, "step": 12, "epoch": 2}


def test_step_log_windows_resume_and_off(tmp_path):
    log = runlog.StepLog(str(tmp_path), 2)
    for step, (loss, wrong) in enumerate([(4.0, 1), (2.0, 3), (8.0, 4), (6.0, 0)], 1):
        log.add(step, 1, loss, wrong, 4, 0.1)
    assert log.rows == [{"step": 2, "epoch": 1, "train_top1_err": 0.5, "train_loss": 0.75, "lr": 0.1},
                        {"step": 4, "epoch": 1, "train_top1_err": 0.5, "train_loss": 1.75, "lr": 0.1}]
    with open(tmp_path / "steps.csv", "a") as f:
        f.write("6,2,0.25")  # a row cut short by a kill
    assert runlog.read_steps(str(tmp_path / "steps.csv")) == log.rows
    resumed = runlog.StepLog(str(tmp_path), 2)
    resumed.resume(3, [4.0, 1.0, 4])  # the checkpoint at step 3, its window: step 3
    assert resumed.rows == log.rows[:1]
    assert (tmp_path / "steps.csv").read_text() == "step,epoch,train_top1_err,train_loss,lr\n2,1,0.5,0.75,0.1\n"
    resumed.add(4, 1, 6.0, 0, 4, 0.1)
    assert runlog.read_steps(str(tmp_path / "steps.csv")) == [log.rows[0], {**log.rows[1], "train_loss": 1.25,
                                                                            "train_top1_err": 0.125}]
    off = runlog.StepLog(str(tmp_path / "off"), 0)
    off.add(2, 1, 1.0, 1, 4, 0.1)
    assert off.rows == [] and not (tmp_path / "off").exists()


def test_a_resumed_run_keeps_its_log_every(tmp_path, capsys):
    """steps.csv's rows every N steps stay evenly spaced: resuming with another --log-every is
    refused in one line naming the value to pass, the run directory untouched; runs from
    before --log-every (no log_every in config.json) resume as they are."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    digits = builtin_digits()
    config = recipe_config(resnet_cifar.RECIPE, Run(smoke=True, log_every=1, run_dir=str(run_dir)), digits)
    identity = {**engine._identity_json(config), "dataset": digits.name}  # this run's: only log_every differs
    (run_dir / "config.json").write_text(json.dumps({"identity": identity, "config": {"log_every": 1}}))
    (run_dir / "steps.csv").write_text("step,epoch,train_top1_err,train_loss,lr\n1,1,0.9,2.3,0.1\n")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(SystemExit) as exit_:
        main(resnet_cifar.RECIPE, ["--smoke", "--log-every", "0", "--epochs", "3", "--run-dir", str(run_dir)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"error: run directory {str(run_dir)!r} logs with --log-every 1 (its config.json); this command gives 0. "
        f"Rerun with --log-every 1 to resume it, or pick a new --run-dir.\n")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    engine._check_resumed_log_every(config)  # the same value
    (run_dir / "config.json").write_text(json.dumps({"identity": identity, "config": {}}))
    engine._check_resumed_log_every(dataclasses.replace(config, log_every=0))  # a run from before --log-every


def test_log_every_and_target_error_flags():
    digits = builtin_digits()
    config = recipe_config(resnet_cifar.RECIPE, Run(log_every=0, target_error=0.5), digits)
    assert (config.log_every, config.target_error) == (0, 0.5)
    assert recipe_config(resnet_cifar.RECIPE, Run(), digits).log_every == 5  # the demo's default
    for fields, message in [(dict(log_every=-1), "argument --log-every: expected an integer >= 0, got -1"),
                            (dict(target_error=1.5), "argument --target-error: expected a number in [0, 1], got 1.5")]:
        with pytest.raises(ValueError) as err:
            Run(**fields)
        assert str(err.value) == message


def test_curves_draw_each_run_as_resnet_does(runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "fig" / "curves.png"
    assert visualize_main(["curves", str(runs["resnet20"]), str(runs["plain20"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_bytes()[:4] == b"\x89PNG"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # several runs have no folder of their own: never ./figures unasked
        visualize_main(["curves", str(runs["resnet20"]), str(runs["plain20"])])
    assert exit_.value.code == 2 and not (tmp_path / "figures").exists()
    assert capsys.readouterr().err == ("error: --out FILE.png (or a folder): where the figure of these 2 runs goes; "
                                       "one run's goes into RUN/figures by default.\n")

    path, fig = curves.plot([runs["resnet20"], runs["plain20"]], tmp_path / "again.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["resnet20", "plain20"]  # config.json's model
    lines = ax.get_lines()
    assert len(lines) == 4  # per run: training (thin), validation (bold)
    for (train_line, val_line), run_dir in zip([lines[:2], lines[2:]], runs.values()):
        rows, history = read_csv(run_dir / "steps.csv"), read_csv(run_dir / "history.csv")
        assert list(train_line.get_xdata()) == [3, 6, 9, 12]  # iterations, from steps.csv
        np.testing.assert_allclose(train_line.get_ydata(), [100 * float(r["train_top1_err"]) for r in rows])
        assert list(val_line.get_xdata()) == [STEPS, 2 * STEPS]  # each epoch at the iteration it ends
        np.testing.assert_allclose(val_line.get_ydata(), [100 * float(r["val_top1_err"]) for r in history])
        assert train_line.get_color() == val_line.get_color()
        assert train_line.get_linewidth() < val_line.get_linewidth()
    assert lines[0].get_color() != lines[2].get_color()


def test_curves_fall_back_to_the_epochs_and_name_runs_of_one_model(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs["resnet20"], copy)
    os.remove(copy / "steps.csv")
    fig = curves.curves_figure([curves.read_run(runs["resnet20"]), curves.read_run(copy)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["resnet20 (resnet20)", "resnet20 (copy)"]
    history = read_csv(copy / "history.csv")
    train_line = ax.get_lines()[2]
    assert list(train_line.get_xdata()) == [STEPS, 2 * STEPS]
    np.testing.assert_allclose(train_line.get_ydata(), [100 * float(r["train_top1_err"]) for r in history])


def test_curves_continue_the_training_line_past_steps_csv(tmp_path):
    """Logging turned off on resume (or a run shorter than --log-every steps): after steps.csv's
    last row the thin line goes on with history.csv's training error of the later epochs."""
    (tmp_path / "config.json").write_text(json.dumps({"identity": {"model": "resnet20"}}))
    (tmp_path / "steps.csv").write_text("step,epoch,train_top1_err,train_loss,lr\n1,1,0.9,2.3,0.1\n2,1,0.8,2.2,0.1\n")
    (tmp_path / "history.csv").write_text(
        "epoch,step,lr,train_loss,train_top1_err,val_loss,val_top1_err,val_top5_err\n"
        + "".join(f"{e},{2 * e},0.1,2.0,{1 - e / 10},2.1,{1 - e / 20},0.5\n" for e in (1, 2, 3)))
    run = curves.read_run(tmp_path)
    assert (run.train_steps, run.train_err) == ([1, 2, 4, 6], [0.9, 0.8, 0.8, 0.7])
    assert run.train_from == "steps.csv, then history.csv"
    train_line = curves.curves_figure([run]).axes[0].get_lines()[0]
    assert list(train_line.get_xdata()) == [1, 2, 4, 6]
    np.testing.assert_allclose(train_line.get_ydata(), [90, 80, 80, 70])
    with open(tmp_path / "steps.csv", "a") as f:  # rows up to the last epoch's end: steps.csv alone
        f.write("4,2,0.7,2.0,0.1\n6,3,0.6,1.9,0.1\n")
    run = curves.read_run(tmp_path)
    assert (run.train_steps, run.train_from) == ([1, 2, 4, 6], "steps.csv")


def _refused(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        visualize_main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_curves_errors_name_the_problem(runs, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    err = _refused(capsys, ["curves", str(tmp_path / "notes")])
    assert err == f"error: {str(tmp_path / 'notes')!r} is not a kzoo run directory (no config.json); give the " \
                  f"--run-dir of a training command."
    assert "(it does not exist)" in _refused(capsys, ["curves", str(tmp_path / "none")])
    fresh = tmp_path / "fresh"  # started, no epoch finished, no row yet
    fresh.mkdir()
    shutil.copy(runs["resnet20"] / "config.json", fresh)
    assert _refused(capsys, ["curves", str(runs["plain20"]), str(fresh)]) == (
        f"error: run {str(fresh)!r} has no logs yet: no rows in steps.csv and no finished epoch in history.csv. "
        f"Draw it after its first epoch (or its first --log-every steps).")
    assert "--out curves.png" in _refused(capsys, ["curves", str(runs["plain20"]), "--out", str(tmp_path / "c.jpg")])
    assert not (tmp_path / "c.jpg").exists()


def test_mirrored_rows_are_the_global_error(worker_runs):
    one, two = worker_runs("default")[1], worker_runs("mirrored")[1]
    assert metrics(two)["replicas"] == 2 and metrics(one)["replicas"] == 1
    one, mirrored = read_csv(one / "steps.csv"), read_csv(two / "steps.csv")
    assert [r["step"] for r in mirrored] == [str(s) for s in range(1, 13)]
    # Both replicas' wrong examples over the global batch of 32 (one replica's would be over 16).
    assert [r["train_top1_err"] for r in mirrored] == [r["train_top1_err"] for r in one]
    assert len({r["train_top1_err"] for r in one}) > 1  # the error moves: the rows are not all alike
    for a, b in zip(one, mirrored):
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), rel=1e-5)
