"""Runs that must end where the plain one-device float32 run ends: MirroredStrategy on two
logical CPUs, MultiWorkerMirroredStrategy over two local processes, mixed precision."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.data.sources import builtin_digits
from tests.train_worker import small_config, small_convnet

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "train_worker.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}

# Replicas sum their half-batch gradients, then all-reduce; one device sums the whole batch
# at once. Only float32 rounding differs: measured at most 2e-8 (weights up to 0.25, ulp
# 3e-8), while the 12 steps move each weight by ~0.02. A decay counted once per replica
# (the bug this caught) missed by 7e-5; wrong examples or gradient scaling miss by far more.
TOLERANCE = dict(rtol=0, atol=2e-7)


def _worker(out, run_dir, strategy, *extra):
    return [sys.executable, WORKER, str(out), str(run_dir), strategy, *extra]


def _weights(npz):
    return {k: npz[k] for k in npz.files if re.fullmatch(r"w\d+", k)}


@pytest.fixture(scope="module")
def one_device(worker_runs):
    """The one-process, one-device reference run of tests/train_worker.py (conftest starts it
    in the background beside the mirrored one); calling the fixture waits for it."""
    def reference():
        npz = worker_runs("default")[0]
        for key, final in _weights(npz).items():  # training moved every weight
            assert np.abs(final - npz["init" + key[1:]]).max() > 1000 * TOLERANCE["atol"], key
        return npz

    return reference


def _assert_matches(reference, other):
    assert _weights(other).keys() == _weights(reference).keys()
    for key in _weights(reference):
        np.testing.assert_array_equal(other["init" + key[1:]], reference["init" + key[1:]])  # same start
        np.testing.assert_allclose(other[key], reference[key], **TOLERANCE, err_msg=key)
    assert float(other["loss"]) == pytest.approx(float(reference["loss"]), rel=1e-6)


def test_mirrored_two_cpus_matches_one_device(worker_runs, one_device):
    two = worker_runs("mirrored")[0]
    assert int(two["replicas"]) == 2
    _assert_matches(one_device(), two)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_with_tf_config_match_one_process(tmp_path, one_device):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            _worker(tmp_path / f"w{index}.npz", tmp_path / "run", "multiworker"),
            env={**ENV, "TF_CONFIG": json.dumps(tf_config)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    for key in _weights(w0):  # the workers hold one model
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    assert int(w0["replicas"]) == 2
    with open(tmp_path / "run" / "metrics.json", encoding="utf-8") as f:
        assert json.load(f)["replicas"] == 2  # written by the chief only
    _assert_matches(one_device(), w0)


# --- mixed precision ---------------------------------------------------------------------

def _train_small(run_dir, precision, epochs=1, verbose=0):
    from kzoo.train.engine import train

    # A decay 100x AlexNet's: here it is ~27% of the weights' change, so a decay that the
    # loss scaling shrank (or dropped) shows far beyond the tolerance.
    config = small_config(run_dir, epochs=epochs, weight_decay=0.05, verbose=verbose, precision=precision)
    initial = []
    metrics, model = train(config, builtin_digits(), model_fn=small_convnet(initial))
    return metrics, initial, model.get_weights(), model.layers[-1].dtype_policy.name


# float16 keeps 11 significant bits, bfloat16 8 (relative rounding 5e-4 and 4e-3 per operation):
# over 6 steps the weights' change agrees with float32's to at most 1.6% (float16) and 3.0%
# (bfloat16; the conv biases), measured on the AMX Xeon; the loss to 3e-5 and 2e-4.
DRIFT = {"mixed_float16": 0.03, "mixed_bfloat16": 0.08}


@pytest.fixture(scope="module")
def float32_small(tmp_path_factory):
    """_train_small's float32 run, the reference of both mixed precisions."""
    return _train_small(tmp_path_factory.mktemp("f32"), "float32")


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_like_float32_and_resumes(tmp_path, capsys, precision, float32_small):
    loss32, init32, final32, policy32 = float32_small
    lossm, initm, finalm, policym = _train_small(tmp_path / "m", precision)
    assert (policy32, policym) == ("float32", precision)
    assert keras.config.dtype_policy().name == "float32"  # the caller's global policy, untouched
    for a, b in zip(init32, initm):
        np.testing.assert_array_equal(a, b)  # same seed, same start
    for i, (start, w32, wm) in enumerate(zip(init32, final32, finalm)):
        change = np.linalg.norm(w32 - start)
        assert change > 0, i
        assert np.linalg.norm(wm - w32) < DRIFT[precision] * change, i
    assert lossm["train_loss"] == pytest.approx(loss32["train_loss"], rel=1e-3)
    assert lossm["val_loss"] == pytest.approx(loss32["val_loss"], rel=1e-3)
    with open(tmp_path / "m" / "config.json", encoding="utf-8") as f:
        assert json.load(f)["config"]["precision"] == precision

    capsys.readouterr()
    # Resumed without naming the precision: the run's own is used
    resumed, _, _, _ = _train_small(tmp_path / "m", None, epochs=2, verbose=1)
    assert f"Resuming {tmp_path / 'm'} at epoch 2, step 6." in capsys.readouterr().out
    assert (resumed["steps"], resumed["steps_this_run"], resumed["epochs_run"]) == (12, 6, 2)
    # bit for bit the uninterrupted run: weights, momenta (float16: the loss scale and its counter)
    whole, _, _, _ = _train_small(tmp_path / "whole", precision, epochs=2)
    assert resumed["train_loss"] == whole["train_loss"] and resumed["val_loss"] == whole["val_loss"]
    ours, theirs = _checkpoint_tensors(tmp_path / "m", named=True), _checkpoint_tensors(tmp_path / "whole", named=True)
    assert ours.keys() == theirs.keys()
    assert any("scale" in k for k in ours) == (precision == "mixed_float16"), sorted(ours)  # bfloat16: unscaled
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    assert (tmp_path / "m" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()


def test_mirrored_bfloat16_matches_one_device(tmp_path, monkeypatch):
    """Two replicas in bfloat16 end where one device does: each replica rounds its own
    half-batch gradient to bfloat16 before the float32 all-reduce, so the two differ by
    bfloat16 rounding, measured at most 1.9% of the weights' change (12 steps; the conv
    kernel), where float32 replicas agree to 2e-7."""
    from tests.train_worker import main as worker

    env = {**ENV, "TRAIN_PRECISION": "mixed_bfloat16"}
    mirrored = subprocess.Popen(_worker(tmp_path / "mirrored.npz", tmp_path / "mirrored", "mirrored", "2"), env=env,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # the one-device run here meanwhile (a process fewer to start): train_worker's own run
    monkeypatch.setenv("TRAIN_PRECISION", "mixed_bfloat16")
    worker(tmp_path / "default.npz", tmp_path / "default", "default")
    output = mirrored.communicate(timeout=600)[0]
    assert mirrored.returncode == 0, output[-2000:]
    one, two = np.load(tmp_path / "default.npz"), np.load(tmp_path / "mirrored.npz")
    assert int(two["replicas"]) == 2
    for key in _weights(one):
        np.testing.assert_array_equal(two["init" + key[1:]], one["init" + key[1:]])
        change = np.linalg.norm(one[key] - one["init" + key[1:]])
        assert change > 0 and np.linalg.norm(two[key] - one[key]) < 0.05 * change, key
    assert float(two["loss"]) == pytest.approx(float(one["loss"]), rel=1e-3)
    with open(tmp_path / "mirrored" / "config.json", encoding="utf-8") as f:
        assert json.load(f)["config"]["precision"] == "mixed_bfloat16"


def _checkpoint_tensors(run_dir, named=False):
    folder = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(folder, "latest.json"), encoding="utf-8") as f:
        reader = tf.train.load_checkpoint(os.path.join(folder, json.load(f)["prefix"]))
    tensors = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    return tensors if named else list(tensors.values())


def test_mixed_precision_run_evaluates(tmp_path, capsys):
    from kzoo.evaluate.run import main as evaluate
    from kzoo.inference import load
    from kzoo.recipes import resnet_cifar
    from kzoo.recipes.common import main

    run_dir = str(tmp_path / "run")
    assert main(resnet_cifar.RECIPE, ["--smoke", "--mixed-precision", "--input-size", "8", "--run-dir", run_dir,
                                      "--depth", "20"]) == 0
    assert keras.config.dtype_policy().name == "float32"
    trained = load(run_dir=run_dir)
    model = trained.model  # every weight (and BN statistic) is the checkpoint's
    saved = _checkpoint_tensors(run_dir)
    for w in model.weights:
        value = np.asarray(w)
        assert any(t.shape == value.shape and np.array_equal(t, value) for t in saved), w.path
    capsys.readouterr()
    assert evaluate(["--run-dir", run_dir, "--limit", "16"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    images, labels = zip(*((image.numpy(), int(label)) for image, label in builtin_digits().val.take(16)))
    probabilities = trained.predict(np.stack(images))
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    assert result["images"] == 16
    assert result["top1_err"] == pytest.approx(np.mean(probabilities.argmax(1) != np.array(labels)))
    assert result["top5_err"] == pytest.approx(np.mean([y not in row for y, row in zip(labels, top5)]))
    # evaluated in the run's precision by default, in another when asked (the float16 checkpoint read alike)
    assert result["precision"] == trained.precision == "mixed_float16"
    assert evaluate(["--run-dir", run_dir, "--limit", "16", "--precision", "float32"]) == 0
    in32 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert in32["precision"] == "float32" and abs(in32["top1_err"] - result["top1_err"]) <= 1 / 16
