"""A study as a keras-tuner search: the hypermodel builds with the kzoo builders and
fits with the recipe engine; finished trials are read back into the paper's table.

Tuner state lives in OUT/tuner (rerunning resumes it: finished trials are not
redone); each trial trains in OUT/trials/<row> (an interrupted trial resumes from
its checkpoint). OUT/study.json records the study and the base run settings its trials
measure with (epochs, batch, data, --val-split, seed, ...): a rerun with other settings is
refused (their results would be the old ones), the same settings resume. An OUT from
before study.json is taken to hold this run's settings (they were not recorded) and
gets its study.json. Several machines: keras-tuner's chief/worker protocol, configured
by KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT.
"""

import dataclasses
import glob
import hashlib
import json
import os
import re

import keras_tuner as kt
import numpy as np

import kzoo
from kzoo import registry
from kzoo.data.sources import hold_out, load_source
from kzoo.recipes.common import train_recipe
from kzoo.tune.studies import TUNERS, get_study
from kzoo.utils.files import atomic_write
from kzoo.visualize import curves as curves_plot
from kzoo.visualize.common import figure, save_figure

OBJECTIVE = kt.Objective("val_top1_err", direction="min")


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60]


def trial_dir(out, label):
    """The run directory of the trial of row (or free-space point) `label`: OUT/trials/<slug>-<hash>."""
    return os.path.join(out, "trials", _slug(label) + "-" + hashlib.sha256(label.encode()).hexdigest()[:6])


class StudyHyperModel(kt.HyperModel):
    """space "rows": one choice among the paper's rows; "free": every knob of the study."""

    def __init__(self, study, train_trial, space="rows"):
        super().__init__(name=study.name)
        if space not in ("rows", "free"):
            raise ValueError(f"unknown --space {space!r}; expected 'rows' (the paper's) or 'free'.")
        self.study, self.train_trial, self.space = study, train_trial, space

    def choose(self, hp):
        """(label, registry name, builder options, Run fields) of this trial's hyperparameters."""
        if self.space == "rows":
            row = self.study.row(hp.Choice("row", [r.label for r in self.study.rows]))
            return row.label, row.model, dict(row.options), dict(row.run)
        values = {k: hp.Boolean(k) if all(isinstance(x, bool) for x in v) else hp.Choice(k, v)
                  for k, v in self.study.knobs.items()}
        name, options, *run = self.study.to_model(values)  # a study of training settings adds Run fields
        return ", ".join(f"{k}={v}" for k, v in values.items()), name, options, dict(*run)

    def build(self, hp):
        _, name, options, _ = self.choose(hp)
        entry = registry.get_entry(name)
        size = entry.min_size  # a cheap check that the row builds; the engine builds the real one
        return registry.create_model(name, input_shape=(size, size, 3), **options)

    def fit(self, hp, model, *args, epochs=None, **kwargs):
        label, name, options, run = self.choose(hp)
        return self.train_trial(label, name, options, epochs, run)


class ResumableGridOracle(kt.oracles.GridSearchOracle):
    """keras-tuner's grid oracle does not save where it is in the grid, so a reloaded
    search stops at once; rebuild that from the stored trials (in grid order)."""

    def reload(self):
        super().reload()
        space = self.get_space().space

        def position(trial_id):
            values = self.trials[trial_id].hyperparameters.values
            # keras-tuner's grid order: each hyperparameter's default first, then its values in order
            order = lambda hp: [hp.default] + [v for v in hp.values if v != hp.default]  # noqa: E731
            return [order(hp).index(values[hp.name]) for hp in space if hp.name in values]

        ids = sorted(self.trials, key=position)
        for trial_id in ids:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(ids)


def make_tuner(hypermodel, kind, directory, max_trials=None, epochs=None, seed=0):
    common = dict(objective=OBJECTIVE, directory=directory, project_name="tuner", overwrite=False, seed=seed)
    if kind == "grid":
        oracle = ResumableGridOracle(objective=OBJECTIVE, max_trials=max_trials, seed=seed)
        return kt.Tuner(oracle=oracle, hypermodel=hypermodel, directory=directory, project_name="tuner",
                        overwrite=False)
    if kind == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials or 10, **common)
    if kind == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials or 10, **common)
    if kind == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=epochs or 10, **common)
    raise ValueError(f"unknown --tuner {kind!r}; expected one of {TUNERS}.")


def trial_trainer(study, base, out):
    """(label, model, options, epochs, run fields) -> metrics: one recipe run per trial, `base`
    (a kzoo.recipes.common.Run: data, epochs, batch, ...) with the trial's model, its own Run
    fields (e.g. pca_std) and folder."""
    recipe = getattr(kzoo.recipes, study.recipe).RECIPE
    source = load_source(base.dataset, base.data_dir, base.download, seed=base.seed)
    # --val-split's images: the base --seed's, the same in every trial (a seed study's rows set only their own seed)
    split_seed = base.seed if base.split_seed is None else base.split_seed
    if base.val_split:  # a too large N is refused before the search, not in each trial
        hold_out(source, base.val_split, split_seed)

    def train_trial(label, name, options, epochs, fields=None):
        run_dir = trial_dir(out, label)
        run = dataclasses.replace(base, model=name, options=options, epochs=epochs or base.epochs, run_dir=run_dir,
                                  **{"split_seed": split_seed, **(fields or {})})
        metrics = train_recipe(recipe, run, source)
        entry = registry.get_entry(name)
        paper_model = registry.create_model(name, **options)  # the paper's input size and classes
        params = sum(int(np.prod(w.shape)) for w in paper_model.trainable_weights)
        return {"val_top1_err": metrics["val_top1_err"], "val_top5_err": metrics["val_top5_err"],
                "train_top1_err": metrics["train_top1_err"], "params": float(params),
                "paper_size": float(entry.default_size)}

    return train_trial


# Run fields a trial sets itself, or that do not change what it measures
_NOT_SETTINGS = ("model", "options", "run_dir", "download", "checkpoint_every")


def study_settings(name, base, space="rows"):
    """What OUT/study.json records: the study, its space and the base Run's settings the trials measure with."""
    run = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name not in _NOT_SETTINGS}
    return json.loads(json.dumps({"study": name, "space": space, "run": run}, default=str))


def check_settings(out, settings):
    """Refuse (ValueError) an OUT whose study.json records other settings; True if it records none yet."""
    path = os.path.join(out, "study.json")
    if not os.path.exists(path):
        if os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, "tuner")):
            found = ", ".join(sorted(os.listdir(out))[:5])
            raise ValueError(f"--out {out!r} holds files that are not a kzoo study ({found}); its report would replace "
                             f"them. Pick another --out.")
        return True
    try:
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({err}); restore it, or pick another --out.") from None
    flat = lambda s: {"study": s.get("study"), "space": s.get("space"), **s.get("run", {})}  # noqa: E731
    old, new = flat(previous), flat(settings)
    differ = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if differ:
        what = ", ".join(f"{k} {old.get(k)!r} (now {new.get(k)!r})" for k in differ)
        raise ValueError(f"--out {out!r} holds a study run with other settings: {what}; its finished trials would "
                         f"be reported as this run's. Pick another --out, or rerun with that run's flags to resume it.")
    return False


def finished_trials(out):
    """[(hyperparameter values, metrics)] of the completed trials stored under OUT/tuner."""
    trials = []
    for path in sorted(glob.glob(os.path.join(out, "tuner", "trial_*", "trial.json"))):
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("status") != "COMPLETED":
            continue
        metrics = {name: m["observations"][-1]["value"][0]
                   for name, m in state["metrics"]["metrics"].items() if m["observations"]}
        trials.append((state["hyperparameters"]["values"], metrics))
    return trials


def results(study, out, space="rows"):
    """Rows of the results table: the paper's rows first (with ours where trained)."""
    done = {}
    for values, metrics in finished_trials(out):
        if space == "rows":
            label = values.get("row")
        else:
            label = ", ".join(f"{k}={values[k]}" for k in study.knobs if k in values)
        done[label] = metrics
    rows = []
    labels = [r.label for r in study.rows] if space == "rows" else sorted(done)
    for label in labels:
        paper = study.row(label).paper if space == "rows" else {}
        rows.append({"row": label, "paper": paper, "ours": done.get(label)})
    return rows


def seed_summary(rows):
    """Over the finished rows (runs that differ in seed only): their count and the best, mean and
    sample standard deviation (n - 1; None for one run) of their val top-1 error, in %."""
    errors = [100 * r["ours"]["val_top1_err"] for r in rows if r["ours"]]
    if not errors:
        return {"runs": 0, "best": None, "mean": None, "std": None}
    return {"runs": len(errors), "best": min(errors), "mean": float(np.mean(errors)),
            "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else None}


def _seed_lines(study, rows):
    ours, paper = seed_summary(rows), study.over_seeds
    what = (f"best {_num(ours['best'])}, mean {_num(ours['mean'])} ± {_num(ours['std']) or '-'}"
            if ours["runs"] else "none finished yet")
    return [f"Over the seeds: ours (val top-1 error %, {ours['runs']} of {len(rows)} runs; std with n - 1): {what}. "
            f"The paper's ({study.columns[0]}, {len(rows)} runs): best {_num(paper['best'])}, "
            f"mean {_num(paper['mean'])} ± {_num(paper['std'])}.", ""]


def write_curves(study, rows, out):
    """The paper-style training curves of the finished trials (kzoo.visualize.curves): one figure per
    panel of `study.curves` (OUT/curves-<panel>.png, as the paper's), then one of every finished
    trial together (OUT/curves.png: the pairs side by side). Returns [(path or None, row labels,
    why not drawn or None)]."""
    done = [r["row"] for r in rows if r["ours"] and os.path.isdir(trial_dir(out, r["row"]))]
    panels = (*study.curves, ("", tuple(done)))  # a free-space search's labels match no panel: curves.png only
    drawn = []
    for panel, labels in panels:
        labels = [label for label in labels if label in done]
        if not labels:
            continue
        path = os.path.join(out, f"curves-{panel}.png" if panel else "curves.png")
        try:
            curves_plot.plot([trial_dir(out, label) for label in labels], path,
                             title=f"{study.name}{': ' + panel if panel else ''}")
            drawn.append((path, labels, None))
        except (ValueError, FileNotFoundError) as err:  # a damaged trial folder: the table still gets written
            drawn.append((None, labels, str(err)))
    return drawn


def _curves_lines(drawn):
    if not drawn:
        return []
    lines = ["Training curves (thin: training error every --log-every steps, bold: validation error per epoch):"]
    for path, labels, why in drawn:
        lines.append(f"- {os.path.basename(path)}: {', '.join(labels)}" if path else
                     f"- not drawn ({', '.join(labels)}): {why}")
    return lines + [""]


def write_report(study, rows, out):
    """OUT/results.md, results.csv and results.png (val top-1 error against parameters); the
    trials' training curves (`write_curves`); a seed study's best and mean ± std."""
    ours_cols = ("train_top1_err", "val_top1_err", "val_top5_err")
    # AlexNet Fig. 1's measure: the first step whose training error is below the runs' --target-error
    level = next((r["ours"]["first_step_below"]["level"] for r in rows
                  if (r["ours"] or {}).get("first_step_below")), None)
    head = ["row", *[f"paper {c}" for c in study.columns], "ours train top-1", "ours val top-1", "ours val top-5",
            *([f"ours first step < {100 * level:g}% train err"] if level is not None else []), "params"]
    table, csv_lines = [], [",".join(f'"{h}"' for h in head)]
    for r in rows:
        ours = r["ours"] or {}
        below = (ours.get("first_step_below") or {})
        step = "" if not below else ("never" if below.get("step") is None else str(below["step"]))
        cells = [r["row"], *[_num(r["paper"].get(c)) for c in study.columns],
                 *[_num(100 * ours[c]) if c in ours else "" for c in ours_cols],
                 *([step if below.get("level", level) == level else "other level"] if level is not None else []),
                 f"{int(ours['params']):,}" if "params" in ours else ""]
        table.append("| " + " | ".join(cells) + " |")
        csv_lines.append(",".join(f'"{c}"' for c in cells))
    md = [f"# {study.name}: {study.paper}", "",
          "Ours: error % on the data the study was run on; trainable parameters at the paper's input size.", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *table, ""]
    if study.over_seeds:
        md += _seed_lines(study, rows)
    md += _curves_lines(write_curves(study, rows, out))
    os.makedirs(out, exist_ok=True)
    with atomic_write(os.path.join(out, "results.md")) as f:
        f.write("\n".join(md))
    with atomic_write(os.path.join(out, "results.csv")) as f:
        f.write("\n".join(csv_lines) + "\n")
    _plot(rows, os.path.join(out, "results.png"), study.name)
    return "\n".join(md)


def _num(value):
    return "" if value is None else f"{value:.4g}"


def _plot(rows, path, title):
    fig, axes = figure(1, 1, size=6)
    ax = axes[0][0]
    for r in rows:
        if r["ours"]:
            ax.scatter(r["ours"]["params"], 100 * r["ours"]["val_top1_err"])
            ax.annotate(r["row"][:30], (r["ours"]["params"], 100 * r["ours"]["val_top1_err"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (paper's input size)")
    ax.set_ylabel("val top-1 error %")
    ax.set_title(title)
    save_figure(fig, path)


def run_study(name, base, tuner="grid", space="rows", max_trials=None, out=None):
    """Search study `name` (resuming), each trial trained as `base` (a kzoo.recipes.common.Run)
    says, then the table; returns the table rows."""
    study = get_study(name)
    out = out or os.path.join("runs", f"ablation-{study.name}")
    settings = study_settings(study.name, base, space)
    new = check_settings(out, settings)  # before any trial: another run's results are never reused
    hypermodel = StudyHyperModel(study, trial_trainer(study, base, out), space)
    if new:  # after the data's checks: a refused run leaves no OUT behind
        if os.path.isdir(os.path.join(out, "tuner")):
            print(f"{out}: a study from before study.json; taking its settings to be this run's and recording them.")
        os.makedirs(out, exist_ok=True)
        with atomic_write(os.path.join(out, "study.json")) as f:
            json.dump(settings, f, indent=2)
    tuner = make_tuner(hypermodel, tuner, out, max_trials, base.epochs, base.seed)
    tuner.search(verbose=1)
    rows = results(study, out, space)
    print(write_report(study, rows, out))
    print(f"Results: {out}/results.md, results.csv, results.png; training curves: {out}/curves*.png")
    return rows

