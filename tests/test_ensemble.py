"""Ensembles (AlexNet §6, ZFNet Table 1, ResNet §4.1): the members' scores averaged, each
member seeing the images through its own preprocessing; each member's own errors beside."""

import json
import os
import shutil

import numpy as np
import pytest

import kzoo
from kzoo.evaluate import ensemble_scores, evaluate_ensemble
from kzoo.preprocessing import Preprocess

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(6, 40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def members():
    """Two random resnet20s that preprocess differently: 32 px, per-pixel-style RGB input with
    one mean; 16 px from a 20 px shorter side, BGR, another mean colour."""
    import dataclasses

    import keras

    from kzoo.registry import get_entry

    # Seeded, and pixels scaled down (a random ReLU net without biases scales its logits with
    # its input): on 0-255 pixels its logits differ by ~1e2 and every softmax row is one-hot,
    # hiding what an average of views does.
    keras.utils.set_random_seed(1)
    a = kzoo.load("resnet20", mean=(120, 110, 100),
                  preprocess=dataclasses.replace(get_entry("resnet20").preprocess_at(), scale=2e-4))
    p = Preprocess(resize=20, crop=16, center=20, pad=2, mean="channel", color="BGR", scale=2e-4)
    b = kzoo.load("resnet20", input_shape=(16, 16, 3), preprocess=p, mean=(10, 200, 60))
    for member in (a, b):
        assert member.predict(IMAGES).max(1).mean() < 0.9  # soft rows: a wrong average shows
    return a, b


def _labels(a, b):
    """Labels each model gets half right: errors neither 0 nor 1, different per member."""
    top_a = a.model.predict(a.preprocess(IMAGES), verbose=0).argmax(1)
    top_b = b.model.predict(b.preprocess(IMAGES), verbose=0).argmax(1)
    return np.concatenate([top_a[:3], top_b[3:]])


def _own_views(trained, protocol):
    """A member's softmax on each view, averaged in numpy (not through kzoo.evaluate)."""
    if protocol == "center":
        return trained.model.predict(trained.preprocess(IMAGES), verbose=0)
    views = trained.ten_views(IMAGES).reshape(-1, trained.input_size, trained.input_size, 3)
    return trained.model.predict(views, verbose=0).reshape(len(IMAGES), 10, -1).mean(1)


def _errors(scores, labels):
    top5 = np.argsort(-scores, axis=1)[:, :5]
    return np.mean(scores.argmax(1) != labels), np.mean([label not in row for label, row in zip(labels, top5)])


@pytest.mark.parametrize("protocol", ["center", "10crop"])
def test_an_ensemble_of_one_is_the_model(members, protocol):
    a = members[0]
    reference = _own_views(a, protocol)
    scores, each = ensemble_scores([a], IMAGES, protocol)
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(each[0], reference, rtol=1e-5, atol=1e-7)
    labels = _labels(*members)
    one = evaluate_ensemble([a], IMAGES, labels, protocol)
    assert (one["top1_err"], one["top5_err"]) == pytest.approx(_errors(reference, labels))
    assert 0 < one["top1_err"] < 1  # the labels are half the model's own top-1
    assert one["ensemble"] == 1 and one["members"][0]["top1_err"] == one["top1_err"]


def test_the_ensemble_averages_each_members_own_views(members, monkeypatch):
    a, b = members
    assert a.preprocess(IMAGES).shape[1:] == (32, 32, 3) and b.preprocess(IMAGES).shape[1:] == (16, 16, 3)
    # Independently of the code under test: each model on its own preprocessed views.
    center = [t.model.predict(t.preprocess(IMAGES), verbose=0) for t in members]
    ten = [t.model.predict(t.ten_views(IMAGES).reshape(-1, t.input_size, t.input_size, 3), verbose=0)
           .reshape(len(IMAGES), 10, -1).mean(1) for t in members]
    monkeypatch.setattr(kzoo.evaluate.views, "CHUNK", {"center": 4, "10crop": 4})  # 6 images: 2 chunks
    read = []

    def images():
        for image in IMAGES:
            read.append(1)
            yield image

    for protocol, reference in (("center", center), ("10crop", ten)):
        read.clear()
        scores, each = ensemble_scores([a, b], images(), protocol)
        assert len(read) == len(IMAGES)  # each image read once, for both members
        np.testing.assert_allclose(each[0], reference[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(each[1], reference[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(scores, (reference[0] + reference[1]) / 2, rtol=1e-5, atol=1e-7)
    assert not np.allclose(reference[0], reference[1], atol=1e-3)  # the average is not either model's


def test_member_errors_are_each_model_alone(members):
    a, b = members
    labels = _labels(a, b)
    filled = []

    def images():  # as the command line streams them: the labels fill as the images are read
        for image, label in zip(IMAGES, labels):
            filled.append(label)
            yield image

    result = evaluate_ensemble([a, b], images(), filled, "center")
    for trained, member in zip(members, result["members"]):
        assert (member["top1_err"], member["top5_err"]) == pytest.approx(_errors(_own_views(trained, "center"), labels))
        assert member["origin"] == "random weights"
    assert [m["top1_err"] for m in result["members"]] != [0.0, 0.0]
    scores = (a.predict(IMAGES) + b.predict(IMAGES)) / 2
    assert result["top1_err"] == pytest.approx(np.mean(scores.argmax(1) != labels))
    assert result["images"] == 6 and result["ensemble"] == 2
    assert result["view_sizes"] is None  # 32 and 16 px: no common list; each member has its own
    assert [m["view_sizes"] for m in result["members"]] == [[[32, 32]], [[16, 16]]]


def test_members_must_share_their_classes(members):
    a = members[0]
    five = kzoo.load("resnet20", classes=5, mean=(0, 0, 0))
    with pytest.raises(ValueError) as err:
        ensemble_scores([a, five], IMAGES, "center")
    assert str(err.value) == (
        "member 2 (random weights) has 5 classes but member 1 (random weights) has 10: their scores cannot be "
        "averaged class by class. Ensemble models trained on the same classes.")
    names = kzoo.load("resnet20", class_names=list("0123456789")[::-1], mean=(0, 0, 0))
    with pytest.raises(ValueError) as err:
        evaluate_ensemble([a, names], IMAGES, np.zeros(6, int), "center")
    assert str(err.value) == (
        "member 2 (random weights) names class 0 '9' but member 1 (random weights) names it '0': their label ids "
        "mean other classes. Ensemble models trained on the same classes, in the same order.")
    with pytest.raises(ValueError, match=r"member 2 \(random weights\) is the same model as member 1: an ensemble "
                                         r"averages different models; drop one"):
        ensemble_scores([a, a], IMAGES, "center")
    with pytest.raises(ValueError, match="an ensemble needs at least one model"):
        ensemble_scores([], IMAGES, "center")


@pytest.fixture(scope="module")
def two_runs(trained_run):
    """Two finished two-step resnet20 runs on the digits: 8 px (seed 0) and 12 px (seed 1)."""
    return (str(trained_run("resnet_cifar", "--smoke", "--input-size", "8")[0]),
            str(trained_run("resnet_cifar", "--smoke", "--input-size", "12", "--seed", "1")[0]))


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return out, json.loads(out[-1])


def test_cli_evaluates_an_ensemble_of_runs(two_runs, tmp_path, capsys):
    from kzoo.evaluate.run import main

    alone = []
    for run_dir in two_runs:
        assert main(["--run-dir", run_dir, "--limit", "40"]) == 0
        out, result = _last_json(capsys)
        assert "ensemble" not in result and "members" not in result and "ensemble" not in out[-2]
        alone.append(result)
    path = tmp_path / "ensemble.json"
    assert main(["--run-dir", *two_runs, "--limit", "40", "--json", str(path)]) == 0
    out, result = _last_json(capsys)
    assert json.loads(path.read_text()) == result
    assert out[-4] == (f"center: 40 images, ensemble of 2 models, top-1 error {result['top1_err']:.2%}, "
                       f"top-5 error {result['top5_err']:.2%}")
    for n, (run_dir, own, member) in enumerate(zip(two_runs, alone, result["members"]), 1):
        assert member["run_dir"] == run_dir and member["model"] == "resnet20" and member["origin"] == f"run {run_dir}"
        assert (member["top1_err"], member["top5_err"]) == (own["top1_err"], own["top5_err"])
        assert member["view_sizes"] == own["view_sizes"]
        assert out[-4 + n] == (f"  member {n}, run {run_dir}: top-1 error {own['top1_err']:.2%}, "
                               f"top-5 error {own['top5_err']:.2%}")
    assert result["ensemble"] == 2 and result["images"] == 40 and result["protocol"] == "center"
    assert result["view_sizes"] is None  # 8 and 12 px


def _refused(capsys, argv):
    from kzoo.evaluate.run import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def _edited_copy(run_dir, tmp_path, edit):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config["dataset"])
    (copy / "config.json").write_text(json.dumps(config))
    return str(copy)


def test_cli_refuses_runs_that_cannot_be_averaged(two_runs, tmp_path, capsys):
    r8, r12 = two_runs
    assert _refused(capsys, ["--run-dir", r8, r12, r8]) == (
        f"error: --run-dir gives the run {r8!r} twice: an ensemble averages different models; drop one.")
    again = r8 + "/../" + os.path.basename(r8)
    assert _refused(capsys, ["--run-dir", r8, again]) == (
        f"error: --run-dir gives the run {again!r} twice (as {r8!r} and {again!r}): an ensemble averages different "
        f"models; drop one.")
    assert _refused(capsys, ["--run-dir", r8, r12, "--model", "resnet20"]) == (
        f"error: --model evaluates one model; the ensemble --run-dir {r8} {r12} takes each run's own model, "
        f"weights and mean: drop --model (and --weights).")
    # Another dataset with the same classes (as if trained on a copy of the digits elsewhere).
    other = _edited_copy(r12, tmp_path, lambda d: d.update(name="my_digits", builtin=False))
    assert _refused(capsys, ["--run-dir", r8, other]) == (
        f"error: run {other} was trained on 'my_digits' but run {r8} on 'digits': an ensemble is evaluated on one "
        f"validation set; say which with --dataset NAME (and --data-dir DIR).")
    shutil.rmtree(other)
    named = _edited_copy(r12, tmp_path, lambda d: d.update(class_names=[f"digit {i}" for i in range(10)]))
    assert _refused(capsys, ["--run-dir", r8, named]) == (
        f"error: member 2 (run {named}) names class 0 'digit 0' but member 1 (run {r8}) names it '0': their label "
        f"ids mean other classes. Ensemble models trained on the same classes, in the same order.")
