"""Runs you can trust: exact resume (dropout included), checkpoints that survive any kill
or damage, one process per run directory, and clear errors for run directories."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.sources import builtin_digits
from kzoo.preprocessing import Preprocess
from kzoo.train.checkpoints import CheckpointError
from kzoo.train.engine import TrainConfig, train
from kzoo.train.schedules import StepsAt

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def all_tensors(run_dir):
    """Every tensor of the newest checkpoint (weights, optimizer slots, BN statistics)."""
    folder = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(folder, "latest.json"), encoding="utf-8") as f:
        reader = tf.train.load_checkpoint(os.path.join(folder, json.load(f)["prefix"]))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def assert_same_run(a, b):
    ta, tb = all_tensors(a), all_tensors(b)
    assert ta.keys() == tb.keys() and len(ta) >= 8
    for key in ta:
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    assert (pathlib.Path(a) / "history.csv").read_text() == (pathlib.Path(b) / "history.csv").read_text()


def dropout_net(classes):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(keras.layers.Dense(32, activation="relu")(x))
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


class Crash(Exception):
    pass


class CrashAt(StepsAt):
    """The schedule of a process that dies before step `at` (a kill, in-process)."""

    def __init__(self, at):
        super().__init__(0.05, (), 1.0)
        self.at = at

    def lr(self, step, epoch):
        if step == self.at:
            raise Crash
        return super().lr(step, epoch)


def config(run_dir, **kw):
    defaults = dict(model="custom", schedule=StepsAt(0.05, (), 1.0),
                    preprocess=Preprocess(resize=16, center=16, crop=16), batch_size=16, epochs=2,
                    momentum=0.9, weight_decay=5e-4, steps_per_epoch=4, val_steps=1, checkpoint_every=1,
                    verbose=0)
    return TrainConfig(run_dir=str(run_dir), **{**defaults, **kw})


def run(cfg):
    return train(cfg, builtin_digits(), model_fn=dropout_net)[0]


def crash(cfg, at):
    cfg.schedule = CrashAt(at)
    with pytest.raises(Crash):
        run(cfg)


def test_dropout_net_resumed_mid_epoch_is_bit_identical(tmp_path):
    whole = run(config(tmp_path / "whole"))
    crash(config(tmp_path / "resumed"), at=6)  # dies in its 7th step, after checkpoint 6 (mid-epoch 2)
    resumed = run(config(tmp_path / "resumed"))
    assert (whole["steps"], resumed["steps"], resumed["steps_this_run"]) == (8, 8, 2)
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    assert whole["train_loss"] == resumed["train_loss"]  # the epoch's sums survived the crash


class RecordedDropout(keras.layers.Dropout):
    """Dropout that keeps its last training mask: 1 kept, 0 dropped, -1 where the input was 0."""

    def build(self, input_shape):
        self.mask = self.add_weight(shape=(16, input_shape[-1]), initializer="zeros", trainable=False, name="mask")

    def call(self, inputs, training=False):
        outputs = super().call(inputs, training=training)
        if training:
            kept = tf.cast(tf.not_equal(outputs, 0), "float32")
            self.mask.assign(tf.where(tf.equal(inputs, 0), -1.0, kept))
        return outputs


def test_dropout_masks_follow_the_seed_and_the_global_step(tmp_path):
    """Each step draws its own masks from (seed, step): epoch 2's last step does not repeat epoch
    1's last step (the same batch position), and another seed draws other masks."""
    masks = {}

    class Record(keras.callbacks.Callback):
        def __init__(self, seed):
            super().__init__()
            self.seed = seed

        def on_epoch_end(self, epoch, logs=None):
            masks[self.seed, epoch] = np.array(self.model.get_layer("recorded").mask)

    def recorded_net(classes):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(classes)(RecordedDropout(0.5, name="recorded")(x)))

    for seed in (0, 1):
        train(config(tmp_path / f"seed{seed}", seed=seed), builtin_digits(), model_fn=recorded_net,
              callbacks=[Record(seed)])

    def agreement(a, b):  # over units that reached dropout in both steps
        both = (a >= 0) & (b >= 0)
        assert both.sum() > 100
        return np.mean(a[both] == b[both])

    assert all(0.3 < np.mean(m[m >= 0]) < 0.7 for m in masks.values())  # rate 0.5
    assert agreement(masks[0, 0], masks[0, 1]) < 0.7  # independent draws agree ~half the time
    assert agreement(masks[0, 1], masks[1, 1]) < 0.7


def test_other_steps_per_epoch_mid_epoch_is_refused_then_same_resumes(tmp_path):
    crash(config(tmp_path / "r"), at=2)
    with pytest.raises(ValueError, match=r"stopped at batch 2 of 4 in epoch 1; this command makes epochs of "
                                         r"3 steps\. Rerun it with --steps-per-epoch 4"):
        run(config(tmp_path / "r", steps_per_epoch=3))
    assert run(config(tmp_path / "r"))["steps"] == 8


def test_leftovers_of_a_killed_write_are_removed_and_pruning_goes_on(tmp_path, capsys):
    run(config(tmp_path / "r", epochs=1))
    folder = tmp_path / "r" / "checkpoints"
    (folder / "ckpt-6_temp").mkdir()
    (folder / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"\0" * 1000)
    (folder / ".tmp-abc123").write_text('{"step": ')
    (tmp_path / "r" / ".tmp-history").write_text("epoch,")
    assert run(config(tmp_path / "r", epochs=2))["steps"] == 8
    names = sorted(os.listdir(folder))
    assert names == ["ckpt-7.data-00000-of-00001", "ckpt-7.index", "ckpt-7.json",
                     "ckpt-8.data-00000-of-00001", "ckpt-8.index", "ckpt-8.json", "latest.json"]
    assert not (tmp_path / "r" / ".tmp-history").exists()


@pytest.mark.parametrize("damage", ["index", "data"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys, damage):
    cfg = config(tmp_path / "r", epochs=1, checkpoint_every=0)
    run(cfg)
    run(config(tmp_path / "r", epochs=2, checkpoint_every=0))  # ckpt-4 and ckpt-8
    folder = tmp_path / "r" / "checkpoints"
    name = "ckpt-8.index" if damage == "index" else "ckpt-8.data-00000-of-00001"
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    metrics = run(config(tmp_path / "r", epochs=3, checkpoint_every=0, verbose=1))
    out = capsys.readouterr().out
    assert re.search(r"damaged checkpoint ckpt-8 \(.+\) moved aside as damaged-\*; using ckpt-4 \(step 4\)", out)
    assert "Resuming" in out and "step 4." in out
    assert (metrics["steps"], metrics["steps_this_run"]) == (12, 8)
    assert (folder / f"damaged-{name}").exists()


@pytest.mark.parametrize("cut", [1, 3], ids=["first", "third"])
def test_a_checkpoint_whose_record_was_cut_short_is_set_aside_and_the_run_equals_an_uninterrupted_one(
        tmp_path, monkeypatch, capsys, cut):
    """A kill (or a full disk) after TensorFlow wrote checkpoint N's tensors but before its loop
    state: the rerun sets those tensors aside, says so in one line, and goes on from the newest
    recorded checkpoint (or the start), ending where an uninterrupted run ends."""
    import kzoo.train.checkpoints as checkpoints

    run(config(tmp_path / "whole"))
    real, records = checkpoints.atomic_write, []

    def cut_short(path, *args, **kwargs):
        records.append(path)
        if len(records) == 2 * cut - 1:  # the cut-th save's first record (ckpt-N.json)
            raise Crash
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "atomic_write", cut_short)
    with pytest.raises(Crash):
        run(config(tmp_path / "cut"))
    monkeypatch.setattr(checkpoints, "atomic_write", real)
    folder = tmp_path / "cut" / "checkpoints"
    assert (folder / f"ckpt-{cut}.index").exists() and not (folder / f"ckpt-{cut}.json").exists()
    capsys.readouterr()
    metrics = run(config(tmp_path / "cut", verbose=1))
    out = capsys.readouterr().out
    where = "the start" if cut == 1 else f"ckpt-{cut - 1}"
    assert (f"checkpoint ckpt-{cut} has no loop state: its write was cut short (set aside as unfinished-*); "
            f"going on from {where}.") in out
    assert metrics["steps_this_run"] == 8 - (cut - 1)
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    assert (folder / f"unfinished-ckpt-{cut}.index").exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_the_run_resumes_once_there_is_space(tmp_path, monkeypatch):
    import errno

    run(config(tmp_path / "whole"))
    real, writes = tf.train.Checkpoint.write, []

    def full(self, prefix, *args, **kwargs):
        writes.append(prefix)
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", full)
    with pytest.raises(CheckpointError) as err:
        run(config(tmp_path / "full"))
    assert str(err.value) == (
        f"no space left on the disk of {tmp_path / 'full' / 'checkpoints'} while writing the checkpoint of step 3: "
        f"the run stopped there. Its newest complete checkpoint (step 2) is kept; free some space and rerun the "
        f"same command to resume from it.")
    monkeypatch.setattr(tf.train.Checkpoint, "write", real)
    assert run(config(tmp_path / "full"))["steps_this_run"] == 6  # from step 2
    assert_same_run(tmp_path / "whole", tmp_path / "full")


def test_a_record_that_names_tensors_outside_its_run_is_refused(tmp_path):
    run(config(tmp_path / "other", epochs=1))
    run(config(tmp_path / "r", epochs=1))
    folder = tmp_path / "r" / "checkpoints"
    for name in ("ckpt-4.json", "latest.json"):
        record = json.loads((folder / name).read_text())
        record["prefix"] = "../../other/checkpoints/ckpt-4"
        (folder / name).write_text(json.dumps(record))
    before = sorted(os.listdir(tmp_path / "other" / "checkpoints"))
    with pytest.raises(CheckpointError, match=r"latest\.json names the tensors '\.\./\.\./other/checkpoints/ckpt-4' "
                                              r"\(step 4\), not its own 'ckpt-4': kzoo reads only the checkpoints in "
                                              r"the run's own folder"):
        run(config(tmp_path / "r", epochs=2))
    (folder / "latest.json").unlink()  # the per-checkpoint record is refused too, not taken for damage
    with pytest.raises(CheckpointError, match=r"ckpt-4\.json names the tensors .* not its own 'ckpt-4' of step 4"):
        run(config(tmp_path / "r", epochs=2))
    assert sorted(os.listdir(tmp_path / "other" / "checkpoints")) == before
    assert not [n for n in os.listdir(folder) if n.startswith(("damaged", "unfinished"))]


@pytest.mark.parametrize("content", ["[]", "{}", '{"step": "4", "prefix": "ckpt-4"}', "null"])
def test_a_record_that_is_not_a_record_is_named(tmp_path, content):
    run(config(tmp_path / "r", epochs=1))
    path = tmp_path / "r" / "checkpoints" / "latest.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r" is damaged \(not a kzoo checkpoint record: "
                                                                      r".*\)\. Delete it and rerun"):
        run(config(tmp_path / "r", epochs=2))
    path.unlink()  # the advice works: the newest intact checkpoint's own record
    assert run(config(tmp_path / "r", epochs=2))["steps_this_run"] == 4


def test_finished_epochs_are_never_trained_over(tmp_path):
    """checkpoints/ deleted (to free space) or replaced by a file: the rerun refuses instead of
    training from the start over history.csv and metrics.json; nothing in the folder changes."""
    import shutil

    run(config(tmp_path / "r", epochs=1))
    shutil.rmtree(tmp_path / "r" / "checkpoints")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(CheckpointError, match=r"holds the record of finished epochs \(metrics\.json, history\.csv\) "
                                              r"but no checkpoint to resume from .*Pick a new --run-dir"):
        run(config(tmp_path / "r", epochs=2))
    (tmp_path / "r" / "checkpoints").write_text("mine")
    with pytest.raises(CheckpointError, match=r"checkpoints is a file, not kzoo's checkpoint folder"):
        run(config(tmp_path / "r", epochs=2))
    (tmp_path / "r" / "checkpoints").unlink()
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file() and p.name != ".lock"} == before


def test_another_precision_is_a_mismatch_not_damage(tmp_path):
    run(config(tmp_path / "r", epochs=1))
    names = sorted(os.listdir(tmp_path / "r" / "checkpoints"))
    for other in ("mixed_float16", "mixed_bfloat16"):
        with pytest.raises(ValueError, match=rf"trains in float32 \(its config\.json\); this command asks for "
                                             rf"{other}\. Rerun with --precision float32 \(or without --precision\) "
                                             rf"to resume it"):
            run(config(tmp_path / "r", epochs=2, precision=other))
    assert keras.config.dtype_policy().name == "float32"
    assert sorted(os.listdir(tmp_path / "r" / "checkpoints")) == names  # nothing set aside
    assert run(config(tmp_path / "r", epochs=2))["steps_this_run"] == 4  # and it resumes


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    run(config(tmp_path / "r", epochs=1, checkpoint_every=2))  # ckpt-2, ckpt-4
    folder = tmp_path / "r" / "checkpoints"
    for step in (2, 4):
        (folder / f"ckpt-{step}.index").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*checkpoints: ckpt-4 \(.+\); ckpt-2 \(.+\)\. "
                                              r"Start afresh with another --run-dir"):
        run(config(tmp_path / "r", epochs=2))


def test_deleted_latest_json_recovers_from_the_newest_checkpoint(tmp_path, capsys):
    run(config(tmp_path / "r", epochs=1))
    os.remove(tmp_path / "r" / "checkpoints" / "latest.json")
    capsys.readouterr()
    metrics = run(config(tmp_path / "r", epochs=2, verbose=1))
    assert "latest.json is missing; recovering from the newest intact checkpoint" in capsys.readouterr().out
    assert (metrics["steps"], metrics["steps_this_run"]) == (8, 4)
    assert [r["epoch"] for r in json.load(open(tmp_path / "r" / "checkpoints" / "latest.json"))["history"]] == [1, 2]


def test_truncated_latest_json_is_named(tmp_path):
    run(config(tmp_path / "r", epochs=1))
    path = tmp_path / "r" / "checkpoints" / "latest.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r" is damaged .*Delete it and rerun"):
        run(config(tmp_path / "r", epochs=2))


def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path):
    run(config(tmp_path / "r", epochs=1))
    holder = subprocess.Popen(  # a training process, as far as the lock goes
        [sys.executable, "-c", "import sys, time\nfrom kzoo.train.rundir import run_dir_lock\n"
         "with run_dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)",
         str(tmp_path / "r")], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(CheckpointError, match=rf"run directory .* is in use by another kzoo process "
                                                  rf"\(pid {holder.pid} on .*\); wait for it"):
            run(config(tmp_path / "r", epochs=2))
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: it must not stay locked
        holder.wait()
    assert (tmp_path / "r" / ".lock").exists()
    assert run(config(tmp_path / "r", epochs=2))["steps_this_run"] == 4


def test_run_dir_that_cannot_be_used(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match=r"--run-dir '.*file' is a file, not a folder"):
        run(config(tmp_path / "file"))
    with pytest.raises(ValueError, match=r"--run-dir '.*file/run' cannot be written \(Not a directory\)"):
        run(config(tmp_path / "file" / "run"))
    with pytest.raises(ValueError, match=r"--run-dir '/proc/kzoo-run' cannot be written \(No such file or "
                                         r"directory\); pick a folder you can write to\."):
        run(config("/proc/kzoo-run"))

    def denied(**kwargs):  # a folder this user may not write (root may write anywhere: simulated)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("kzoo.train.engine.tempfile.TemporaryFile", denied)
    with pytest.raises(ValueError, match=r"--run-dir '.*locked' cannot be written \(Permission denied\)"):
        run(config(tmp_path / "locked"))
    assert (tmp_path / "file").read_text() == "mine"


def _wait_for_mid_epoch_checkpoint(run_dir, proc, min_step):
    latest = os.path.join(run_dir, "checkpoints", "latest.json")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.load(open(latest))
        except (OSError, ValueError):
            state = None
        if state and state["batch_in_epoch"] and state["step"] >= min_step:
            return
        time.sleep(0.005)
    raise AssertionError(f"no mid-epoch checkpoint at step >= {min_step} appeared")


@pytest.mark.parametrize("command", [
    [str(ROOT / "tests" / "resume_worker.py"), "--input-size", "64"],  # AlexNet, dropout in fc6/fc7
    pytest.param(["-m", "kzoo.recipes.resnet_cifar", "--depth", "20"], marks=pytest.mark.large),  # BN statistics
    # bfloat16: killed and resumed without --precision (the run's own); the in-process bit-for-bit
    # resume of test_distributed.py guards bfloat16 in the default tier
    pytest.param([str(ROOT / "tests" / "resume_worker.py"), "--input-size", "64", "--precision", "mixed_bfloat16"],
                 marks=pytest.mark.large),
], ids=["alexnet-dropout", "resnet20", "alexnet-dropout-bfloat16"])
def test_sigkill_mid_epoch_then_rerun_equals_uninterrupted(tmp_path, command):
    def args(run_dir):
        return [sys.executable, *command, "--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "16",
                "--checkpoint-every", "2", "--run-dir", run_dir]

    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    # The uninterrupted run goes on beside the killed one and its rerun (independent processes).
    uninterrupted = subprocess.Popen(args(whole), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
    try:
        proc = subprocess.Popen(args(killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_mid_epoch_checkpoint(killed, proc, min_step=8)  # in epoch 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and not os.path.exists(os.path.join(killed, "metrics.json"))
        rerun = [a for a in args(killed) if a not in ("--precision", "mixed_bfloat16")]
        out = subprocess.run(rerun, env=ENV, check=True, capture_output=True, text=True, timeout=600).stdout
        whole_out = uninterrupted.communicate(timeout=600)[0]
        assert uninterrupted.returncode == 0, whole_out[-3000:]
    finally:
        uninterrupted.kill()
        uninterrupted.wait()
    resumed_at = int(re.search(r"Resuming .* at epoch 2, step (\d+)\.", out).group(1))
    assert 8 <= resumed_at < 12
    with open(os.path.join(killed, "metrics.json"), encoding="utf-8") as f:
        assert (json.load(f)["steps_this_run"]) == 12 - resumed_at
    assert_same_run(whole, killed)
    with open(os.path.join(killed, "config.json"), encoding="utf-8") as f:
        given = command[command.index("--precision") + 1] if "--precision" in command else "float32"
        assert json.load(f)["config"]["precision"] == given


def test_a_checkpoint_of_another_model_is_not_taken_for_damage(tmp_path):
    run(config(tmp_path / "r", epochs=1))

    def wider(classes):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Flatten()(keras.layers.Conv2D(8, 3, activation="relu")(inputs))
        x = keras.layers.Dropout(0.5)(keras.layers.Dense(32, activation="relu")(x))
        return keras.Model(inputs, keras.layers.Dense(classes)(x))

    with pytest.raises(CheckpointError, match=r"checkpoint .*ckpt-4 does not fit this model .*incompatible tensor"):
        train(config(tmp_path / "r", epochs=2), builtin_digits(), model_fn=wider)
    assert sorted(n for n in os.listdir(tmp_path / "r" / "checkpoints") if n.startswith("damaged")) == []


def test_damaged_config_json_is_named_and_kept(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text('{"identity": ')
    with pytest.raises(ValueError, match=r"config\.json is damaged .*will not resume into it"):
        run(config(tmp_path / "r"))
    assert (tmp_path / "r" / "config.json").read_text() == '{"identity": '
    (tmp_path / "r" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config\.json is damaged \(not a kzoo run record: a list\)\. .*will not "
                                         r"resume into it"):
        run(config(tmp_path / "r"))
    assert (tmp_path / "r" / "config.json").read_text() == "[1, 2]"
