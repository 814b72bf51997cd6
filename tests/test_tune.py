"""The papers' studies as keras-tuner searches: grids equal the papers' rows, a tiny
search runs end to end and resumes, and a chief and a worker share one search."""

import json
import os
import socket
import subprocess
import sys

import keras
import keras_tuner as kt
import numpy as np
import pytest

import kzoo
from kzoo.recipes.ablation import main
from kzoo.tune import search
from kzoo.tune.search import StudyHyperModel, finished_trials
from kzoo.tune.studies import STUDIES, get_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _grid(study, space="rows"):
    hp = kt.HyperParameters()
    StudyHyperModel(study, train_trial=None, space=space).choose(hp)
    return hp.space


def test_each_grid_is_the_papers_rows():
    table3 = get_study("zfnet-table3")
    assert _grid(table3)[0].values == [r.label for r in table3.rows] and len(table3.rows) == 12
    assert table3.row("removed layers 3,4,6,7").paper == {"train top-1": 71.1, "val top-1": 71.3, "val top-5": 50.1}
    assert table3.row("ZF, layers 3,4,5: 512,1024,512 maps").options == {"conv_maps": (512, 1024, 512)}
    design = get_study("alexnet-design")
    assert [r.options for r in design.rows] == [{}, {"towers": 1}, {"lrn": False}, {"overlapping_pool": False},
                                               {"remove_layers": (3,)}, {"remove_layers": (4,)}]
    depth = get_study("resnet-cifar-depth")
    assert [(r.model, r.options.get("shortcut")) for r in depth.rows[:4]] == [
        ("plain20", None), ("resnet20", "A"), ("resnet20", "B"), ("resnet20", "C")]
    assert {r.model for r in depth.rows} == {f"{k}{6 * n + 2}" for k in ("plain", "resnet") for n in (3, 5, 7, 9, 18)}
    assert [r.paper.get("test error") for r in depth.rows if r.options.get("shortcut") == "A"] == \
        [8.75, 7.51, 7.17, 6.97, 6.43]
    # free-form: the same knobs reach the same builder options
    name, options = table3.to_model({"base": "alexnet", "remove_layers": "3,4", "fc_units": 4096,
                                     "conv_maps": "paper"})
    row = table3.row("removed layers 3,4")
    assert (name, {k: v for k, v in options.items() if v not in (None, 4096)}) == (row.model, row.options)
    assert [hp.name for hp in _grid(table3, "free")] == ["base", "remove_layers", "fc_units", "conv_maps"]


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_every_row_builds_what_it_says(study, symbolic):
    for row in get_study(study).rows:
        entry = kzoo.registry.get_entry(row.model)
        size = max(entry.min_size, 67)
        model = symbolic(kzoo.create_model, row.model, input_shape=(size, size, 3), **row.options)
        names = {layer.name for layer in model.layers}
        for n in row.options.get("remove_layers", ()):
            assert not {f"conv{n}", f"fc{n}"} & names, (row.label, n)
        if "fc_units" in row.options and "fc6" in names:
            assert model.get_layer("fc6").units == row.options["fc_units"]
        if "conv_maps" in row.options:
            assert [model.get_layer(f"conv{i}").filters for i in (3, 4, 5)] == list(row.options["conv_maps"])
        if "activation" in row.options:  # the ReLU net's names, tanh units
            tanh = row.options["activation"] == "tanh"
            assert all(isinstance(model.get_layer(f"relu{i}"), keras.layers.Activation) == tanh for i in range(1, 8))


def test_removal_options_keep_the_map_sizes_and_reject_bad_values(symbolic):
    full = symbolic(kzoo.alexnet, towers=1, one_tower="full")
    assert full.count_params() == 62_378_344  # AlexNet on one GPU: dense conv2/4/5
    cut = symbolic(kzoo.zfnet, remove_layers=(3, 4))
    assert cut.get_layer("pool5").output.shape[1:3] == (6, 6)
    assert symbolic(kzoo.zfnet, remove_layers=(6, 7)).get_layer("fc8").input.shape[-1] == 6 * 6 * 256
    with pytest.raises(ValueError, match=r"zfnet: `remove_layers` \(1,\): no removable layer \[1\]"):
        kzoo.zfnet(remove_layers=(1,))
    with pytest.raises(ValueError, match="`conv_maps` must be 3 positive"):
        kzoo.zfnet(conv_maps=(512, 1024))
    with pytest.raises(ValueError, match="`one_tower` must be one of"):
        kzoo.alexnet(towers=1, one_tower="quarter")


ARGS = ["resnet-cifar-depth", "--epochs", "1", "--steps-per-epoch", "2"]


def test_a_tiny_grid_search_runs_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "study")
    assert main([*ARGS, "--max-trials", "1", "--out", out]) == 0
    (values, metrics), = finished_trials(out)
    assert values["row"] == "plain-20" and metrics["params"] == 269_722  # option A: no extra parameter
    with open(os.path.join(search.trial_dir(out, "plain-20"), "metrics.json"), encoding="utf-8") as f:
        assert metrics["val_top1_err"] == json.load(f)["val_top1_err"]  # the trial's own run
    table = open(os.path.join(out, "results.md")).read()
    assert "| ResNet-20, shortcut A | 8.75 |" in table and "| 269,722 |" in table
    assert open(os.path.join(out, "results.csv")).read().count("\n") == 21  # header + 20 paper rows
    first = {p: os.path.getmtime(os.path.join(out, "trials", p)) for p in os.listdir(os.path.join(out, "trials"))}
    capsys.readouterr()
    assert main([*ARGS, "--max-trials", "2", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert printed.count("Running Trial") == 1  # only the new row trains
    assert [v["row"] for v, _ in finished_trials(out)] == ["plain-20", "ResNet-20, shortcut A"]
    assert all(os.path.getmtime(os.path.join(out, "trials", p)) == t for p, t in first.items())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.large
def test_a_chief_and_a_worker_share_one_search(tmp_path):
    out = str(tmp_path / "study")
    env = {**os.environ, "PYTHONPATH": ROOT, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(_free_port())}
    command = [sys.executable, "-m", "kzoo.recipes.ablation", *ARGS, "--max-trials", "2", "--out", out]
    chief = subprocess.Popen(command, env={**env, "KERASTUNER_TUNER_ID": "chief"}, cwd=str(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = subprocess.run(command, env={**env, "KERASTUNER_TUNER_ID": "tuner0"}, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=600)
    try:
        chief_out = chief.communicate(timeout=120)[0]
    finally:
        chief.kill()
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    assert worker.stdout.count("Done: top-1 error") == 2 and "Done: top-1 error" not in chief_out  # the worker trains
    assert [v["row"] for v, _ in finished_trials(out)] == ["plain-20", "ResNet-20, shortcut A"]
    assert os.path.exists(os.path.join(out, "tuner", "chief.json"))  # the chief's oracle kept the state


def test_free_space_random_search_writes_its_rows(tmp_path):
    out = str(tmp_path / "free")
    assert main(["alexnet-design", "--space", "free", "--tuner", "random", "--max-trials", "1", "--epochs", "1",
                 "--steps-per-epoch", "2", "--out", out]) == 0
    (values, metrics), = finished_trials(out)
    assert set(values) == {"towers", "lrn", "overlapping_pool", "remove_layers"}
    assert isinstance(values["lrn"], bool) and 0 <= metrics["val_top1_err"] <= 1
    table = open(os.path.join(out, "results.md")).read()
    assert f"towers={values['towers']}, lrn={values['lrn']}" in table


def test_the_fig1_and_pca_studies_reach_the_builder_and_the_run(monkeypatch, tmp_path):
    """alexnet-relu-tanh's rows differ in the builder's activation only; alexnet-pca's in the
    run's --pca-std only: a row's (and a free-space trial's) Run fields reach the recipe run."""
    from kzoo.recipes.common import Run
    from kzoo.tune import search

    tanh, pca = get_study("alexnet-relu-tanh"), get_study("alexnet-pca")
    steps = "steps to 25% train error, x ReLU's"
    assert [(r.model, r.options, r.run, r.paper) for r in tanh.rows] == [
        ("alexnet", {"activation": "relu"}, {}, {steps: 1.0}), ("alexnet", {"activation": "tanh"}, {}, {steps: 6.0})]
    assert [(r.model, r.options, r.run) for r in pca.rows] == [("alexnet", {}, {"pca_std": 0.1}),
                                                               ("alexnet", {}, {"pca_std": 0.0})]
    runs = []
    monkeypatch.setattr(search, "train_recipe", lambda recipe, run, source: runs.append((recipe.name, run)) or {
        "val_top1_err": 0.5, "val_top5_err": 0.1, "train_top1_err": 0.4})
    monkeypatch.setattr(search.registry, "create_model", lambda name, **options: keras.Sequential())  # params: 0
    base = Run(epochs=1, steps_per_epoch=2)
    for study, space in ((pca, "rows"), (pca, "free"), (tanh, "rows")):
        hypermodel = StudyHyperModel(study, search.trial_trainer(study, base, str(tmp_path)), space)
        for i, value in enumerate(_grid(study, space)[0].values):
            hp = kt.HyperParameters()
            hypermodel.choose(hp)
            hp.values[_grid(study, space)[0].name] = value
            hypermodel.fit(hp, None)
            recipe, run = runs[-1]
            row = study.rows[i]  # the free space's values are the rows' in order too
            assert (recipe, run.model, run.options, run.epochs) == ("alexnet", "alexnet", row.options, 1)
            assert run.pca_std == row.run.get("pca_std"), (study.name, space, value)
    assert [run.pca_std for _, run in runs] == [0.1, 0.0, 0.1, 0.0, None, None]


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_resnet_pair_and_shortcut_studies_are_the_papers_rows(symbolic):
    """ResNet Fig. 6 / Table 6 (CIFAR), Table 2 / Fig. 4 and Table 3 (ImageNet) as studies:
    the rows, options and numbers as SPEC and the paper print them; option A's ResNets have
    exactly their plain twins' parameters (Table 2: "no extra parameter")."""
    fig6 = get_study("resnet-cifar-fig6")
    assert _grid(fig6)[0].values == [r.label for r in fig6.rows]
    assert [(r.model, r.options) for r in fig6.rows] == [
        (f"{kind}{d}", {} if kind == "plain" else {"shortcut": "A"}) for d in (20, 32, 44, 56)
        for kind in ("plain", "resnet")]  # in pairs
    assert [r.paper for r in fig6.rows if r.model.startswith("resnet")] == [
        {"test error": e} for e in (8.75, 7.51, 7.17, 6.97)]  # Table 6
    assert all(r.paper == {} for r in fig6.rows if r.model.startswith("plain"))  # Fig. 6 prints none
    table2 = get_study("resnet-table2")
    assert [(r.label, r.model, r.options, r.paper) for r in table2.rows] == [
        ("plain-18", "plain18", {}, {"val top-1": 27.94}),
        ("ResNet-18", "resnet18", {"shortcut": "A"}, {"val top-1": 27.88}),
        ("plain-34", "plain34", {}, {"val top-1": 28.54}),
        ("ResNet-34", "resnet34", {"shortcut": "A"}, {"val top-1": 25.03})]
    # SPEC's option-B counts less B's three 1x1 projections + BN: 64*128 + 128*256 + 256*512 + 2*(128 + 256 + 512)
    for row, params in zip(table2.rows, (11_689_512 - 173_824,) * 2 + (21_797_672 - 173_824,) * 2):
        assert _trainable(symbolic(kzoo.create_model, row.model, **row.options)) == params, row.label
    table3 = get_study("resnet-table3")
    assert [(r.model, r.options, r.paper) for r in table3.rows] == [
        ("resnet34", {"shortcut": "A"}, {"val top-1": 25.03, "val top-5": 7.76}),
        ("resnet34", {"shortcut": "B"}, {"val top-1": 24.52, "val top-5": 7.46}),
        ("resnet34", {"shortcut": "C"}, {"val top-1": 24.19, "val top-5": 7.40})]
    # the curves' panels are the paper's: Fig. 6 left and middle, Fig. 4 left and right
    assert [(p, [fig6.row(label).model for label in labels]) for p, labels in fig6.curves] == [
        ("plain", ["plain20", "plain32", "plain44", "plain56"]),
        ("resnet", ["resnet20", "resnet32", "resnet44", "resnet56"])]
    assert [(p, [table2.row(label).model for label in labels]) for p, labels in table2.curves] == [
        ("plain", ["plain18", "plain34"]), ("resnet", ["resnet18", "resnet34"])]


def test_the_resnet110_seed_study_trains_five_seeds_and_reports_best_and_mean_std(monkeypatch, tmp_path):
    """Table 6's "best (mean ± std)" of five ResNet-110 runs: the rows differ in the run's seed
    only, and the report gives the best, the mean and the sample std of the trials' errors
    (checked against the statistics module), beside the paper's 6.43 (6.61 ± 0.16)."""
    import statistics

    from kzoo.recipes.common import Run
    from kzoo.tune import search

    study = get_study("resnet110-seeds")
    assert study.over_seeds == {"best": 6.43, "mean": 6.61, "std": 0.16}
    runs = []
    monkeypatch.setattr(search, "train_recipe", lambda recipe, run, source: runs.append((recipe.name, run)) or {
        "val_top1_err": 0.5, "val_top5_err": 0.1, "train_top1_err": 0.4})
    monkeypatch.setattr(search.registry, "create_model", lambda name, **options: keras.Sequential())
    hypermodel = StudyHyperModel(study, search.trial_trainer(study, Run(epochs=1, seed=7), str(tmp_path)))
    for label in _grid(study)[0].values:
        hp = kt.HyperParameters()
        hypermodel.choose(hp)
        hp.values["row"] = label
        hypermodel.fit(hp, None)
    assert [(recipe, run.model, run.options, run.seed, run.epochs) for recipe, run in runs] == [
        ("resnet_cifar", "resnet110", {"shortcut": "A"}, seed, 1) for seed in range(5)]
    assert len({run.run_dir for _, run in runs}) == 5  # a folder per seed

    errors = [0.0712, 0.0680, 0.0695, 0.0731, 0.0702]
    rows = [{"row": r.label, "paper": r.paper, "ours": {"val_top1_err": e, "val_top5_err": 0.0,
                                                       "train_top1_err": 0.0, "params": 1_727_962.0}}
            for r, e in zip(study.rows, errors)]
    percent = [100 * e for e in errors]
    summary = search.seed_summary(rows)
    assert summary["runs"] == 5 and summary["best"] == pytest.approx(6.80)
    assert summary["mean"] == pytest.approx(statistics.mean(percent))
    assert summary["std"] == pytest.approx(statistics.stdev(percent))  # n - 1
    out = str(tmp_path / "report")
    text = search.write_report(study, rows, out)
    assert (f"best {min(percent):.4g}, mean {statistics.mean(percent):.4g} ± {statistics.stdev(percent):.4g}"
            in text)
    assert "best 6.43, mean 6.61 ± 0.16" in text and text == open(os.path.join(out, "results.md")).read()
    rows[1:] = [{**r, "ours": None} for r in rows[1:]]  # one run finished: no std
    assert search.seed_summary(rows) == {"runs": 1, "best": pytest.approx(7.12), "mean": pytest.approx(7.12),
                                         "std": None}
    assert "1 of 5 runs" in search.write_report(study, rows, out)


def test_a_pair_study_draws_the_fig6_curves_over_its_trials_on_a_held_out_split(tmp_path, monkeypatch, capsys):
    """One command, the 20-layer pair of Fig. 6 on the built-in digits with --val-split: each
    trial validates on 100 held-out training images, and the report draws curves-plain.png and
    curves-resnet.png from the trials' own run directories (the thin line: steps.csv's rows)."""
    import csv

    from kzoo.tune import search

    drawn = []
    real_plot = search.curves_plot.plot
    monkeypatch.setattr(search.curves_plot, "plot", lambda dirs, out, title=None: drawn.append(
        (dirs, out, real_plot(dirs, out, title)[1])) or drawn[-1][1:])
    out = str(tmp_path / "study")
    argv = ["resnet-cifar-fig6", "--epochs", "1", "--steps-per-epoch", "2", "--log-every", "1", "--out", out]
    assert main([*argv, "--max-trials", "2", "--val-split", "100"]) == 0
    done = finished_trials(out)
    assert [v["row"] for v, _ in done] == ["plain-20", "ResNet-20, shortcut A"]
    plain, residual = (search.trial_dir(out, label) for label in ("plain-20", "ResNet-20, shortcut A"))
    assert [(dirs, path) for dirs, path, _ in drawn] == [([plain], os.path.join(out, "curves-plain.png")),
                                                         ([residual], os.path.join(out, "curves-resnet.png")),
                                                         ([plain, residual], os.path.join(out, "curves.png"))]
    for dirs, path, fig in drawn:
        assert open(path, "rb").read(4) == b"\x89PNG"
        assert len(fig.axes[0].lines) == 2 * len(dirs)  # a thin and a bold line per trial
    for i, run_dir in enumerate((plain, residual)):
        with open(os.path.join(run_dir, "steps.csv"), newline="") as f:
            steps = list(csv.DictReader(f))
        thin = drawn[2][2].axes[0].lines[2 * i]
        assert list(thin.get_xdata()) == [1, 2] == [int(r["step"]) for r in steps]  # --log-every 1, 2 steps
        assert list(thin.get_ydata()) == pytest.approx([100 * float(r["train_top1_err"]) for r in steps])
        with open(os.path.join(run_dir, "history.csv"), newline="") as f:
            (epoch,) = csv.DictReader(f)
        bold = drawn[2][2].axes[0].lines[2 * i + 1]  # the validation error where the epoch ends
        assert list(bold.get_xdata()) == [2] and list(bold.get_ydata()) == pytest.approx(
            [100 * float(epoch["val_top1_err"])])
        assert float(epoch["val_top1_err"]) == pytest.approx(done[i][1]["val_top1_err"])  # the table's number
        config = json.load(open(os.path.join(run_dir, "config.json")))
        assert config["config"]["val_split"] == 100 and config["identity"]["val_split"] == 100
        # the digits' 1797 images: 1438 train / 359 val (0.2); 100 of the 1438 held out, the 359 unused
        assert (config["dataset"]["train_size"], config["dataset"]["val_size"]) == (1438 - 100, 100)
    table = open(os.path.join(out, "results.md")).read()
    assert ("- curves-plain.png: plain-20\n- curves-resnet.png: ResNet-20, shortcut A\n"
            "- curves.png: plain-20, ResNet-20, shortcut A\n") in table
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # the whole training set held out: refused before any trial
        main([*argv, "--val-split", "1438", "--out", str(tmp_path / "too-many")])
    assert exit_info.value.code == 2 and not os.path.exists(tmp_path / "too-many")
    assert "argument --val-split: expected a number of training images in [1, 1437]" in capsys.readouterr().err


def test_a_rerun_with_other_base_settings_is_refused_not_reported_as_new(monkeypatch, tmp_path, capsys):
    """OUT/study.json records the base run's settings: a rerun into the same OUT with another
    --val-split / --log-every is refused (exit 2, one line naming them) instead of reporting the
    old trials as its own; the same flags resume; an OUT from before study.json is accepted."""
    from kzoo.tune import search

    runs = []
    monkeypatch.setattr(search, "train_recipe", lambda recipe, run, source: runs.append(run) or {
        "val_top1_err": 0.5, "val_top5_err": 0.1, "train_top1_err": 0.4})
    monkeypatch.setattr(search.registry, "create_model", lambda name, **options: keras.Sequential())
    out = str(tmp_path / "study")
    argv = ["alexnet-relu-tanh", "--epochs", "1", "--steps-per-epoch", "1", "--out", out]
    assert main(argv) == 0 and len(runs) == 2
    recorded = json.load(open(os.path.join(out, "study.json")))
    assert recorded["study"] == "alexnet-relu-tanh" and recorded["run"]["val_split"] is None
    assert recorded["run"]["epochs"] == 1 and recorded["run"]["steps_per_epoch"] == 1
    table = open(os.path.join(out, "results.md")).read()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--val-split", "100", "--log-every", "7"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert "log_every None (now 7)" in err and "val_split None (now 100)" in err and "another --out" in err
    assert "epochs" not in err and len(runs) == 2  # nothing trained
    assert json.load(open(os.path.join(out, "study.json"))) == recorded
    assert open(os.path.join(out, "results.md")).read() == table
    assert main(argv) == 0 and len(runs) == 2  # the same flags: the finished trials are kept
    os.remove(os.path.join(out, "study.json"))  # an OUT from before study.json: taken as this run's
    assert main(argv) == 0 and len(runs) == 2
    assert json.load(open(os.path.join(out, "study.json"))) == recorded
    other = str(tmp_path / "other")  # another --out: the new settings run
    assert main([*argv[:-1], other, "--val-split", "100", "--log-every", "7"]) == 0
    assert [(r.val_split, r.log_every) for r in runs[2:]] == [(100, 7), (100, 7)]


def test_a_seed_study_holds_out_the_same_images_in_every_row(monkeypatch, tmp_path):
    """resnet110-seeds' rows differ in the run's seed only: with --val-split they must validate
    on the same held-out images, the base --seed's (the data's split), not each row's."""
    from kzoo.recipes.common import Run
    from kzoo.tune import search

    held = []
    real_hold_out = kzoo.data.sources.hold_out

    def hold_out(source, n, seed=0):
        held.append(seed)
        return real_hold_out(source, n, seed)

    def train(config, source, callbacks=()):
        images = np.stack([image.numpy() for image, _ in source.val])
        trained.append((config.seed, images))
        return {"val_top1_err": 0.5, "val_top5_err": 0.1, "train_top1_err": 0.4}, None

    trained = []
    monkeypatch.setattr(kzoo.data.sources, "hold_out", hold_out)
    monkeypatch.setattr(kzoo.train.engine, "train", train)
    monkeypatch.setattr(kzoo.recipes.common, "check_model_options", lambda *a, **k: None)
    monkeypatch.setattr(search.registry, "create_model", lambda name, **options: keras.Sequential())
    study = get_study("resnet110-seeds")
    hypermodel = StudyHyperModel(study, search.trial_trainer(study, Run(epochs=1, seed=7, val_split=50),
                                                             str(tmp_path)))
    for label in _grid(study)[0].values[:2]:
        hp = kt.HyperParameters()
        hypermodel.choose(hp)
        hp.values["row"] = label
        hypermodel.fit(hp, None)
    assert [seed for seed, _ in trained] == [0, 1]  # the rows' own seeds train
    assert held == [7, 7]  # each row holds out the base --seed's split
    assert trained[0][1].shape[0] == 50 and np.array_equal(trained[0][1], trained[1][1])


def test_the_report_gives_each_trials_first_step_below_the_target_error(tmp_path):
    """AlexNet Fig. 1 compares the iterations to 25% training error: the report's column is
    each trial's metrics' first_step_below, "never" when the run did not get there."""
    from kzoo.tune import search

    study = get_study("alexnet-relu-tanh")
    ours = {"val_top1_err": 0.3, "val_top5_err": 0.1, "train_top1_err": 0.2, "params": 1.0}
    rows = [{"row": study.rows[0].label, "paper": study.rows[0].paper,
             "ours": {**ours, "first_step_below": {"level": 0.25, "step": 42, "epoch": 2}}},
            {"row": study.rows[1].label, "paper": study.rows[1].paper,
             "ours": {**ours, "first_step_below": {"level": 0.25, "step": None, "epoch": None}}}]
    text = search.write_report(study, rows, str(tmp_path))
    assert "| ours first step < 25% train err | params |" in text
    assert "| 20 | 30 | 10 | 42 | 1 |" in text and "| 20 | 30 | 10 | never | 1 |" in text
