"""Training curves as ResNet draws them (He et al. 2015, Figs. 1, 4 and 6): thin lines the
training error, bold lines the validation error, against iterations, a colour per run.

    python -m kzoo.visualize curves runs/plain20 runs/resnet20 [--out curves.png]

Training error: RUN/steps.csv (every --log-every steps) when it has rows, else the
epochs' training error in history.csv. When steps.csv stops before history.csv (logging
turned off on a resumed run, or a run shorter than --log-every steps), the line goes on
with the training error of each epoch that ends after its last row (an epoch's mean,
placed at the iteration it ends). Validation error: history.csv, each epoch placed
at the iteration it ends. Only the runs' CSV and JSON files are read (no TensorFlow),
so a run still training can be drawn.
"""

import dataclasses
import json
import os

from kzoo.train import runlog
from kzoo.utils.cli import option
from kzoo.utils.files import atomic_write


@dataclasses.dataclass
class RunCurves:
    """One run's error curves (errors in [0, 1], x in iterations)."""

    run_dir: str
    model: str
    train_steps: list
    train_err: list
    train_from: str  # "steps.csv", "history.csv", or "steps.csv, then history.csv" (the epochs after its rows)
    val_steps: list
    val_err: list


def _read_config(run_dir):
    # kzoo.inference.read_run_config's checks, without its TensorFlow import (8 s here).
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (it does not exist); give the "
                                f"--run-dir of a training command.")
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (no config.json); give the "
                                f"--run-dir of a training command.") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err}); restore it from a copy of the run directory.") from None


def read_run(run_dir):
    """A run directory's curves; a run with neither steps.csv rows nor a finished epoch is an error.
    The training line is steps.csv's rows, then history.csv's epochs that end after the last row."""
    run_dir = os.fspath(run_dir)
    config = _read_config(run_dir)
    model = (config.get("identity") or {}).get("model")
    if not model:
        raise ValueError(f"{os.path.join(run_dir, 'config.json')} names no model (identity.model); restore it "
                         f"from a copy of the run directory.")
    history = runlog.read_history(os.path.join(run_dir, "history.csv"))
    rows = runlog.read_steps(os.path.join(run_dir, "steps.csv"))
    if not rows and not history:
        raise ValueError(f"run {run_dir!r} has no logs yet: no rows in steps.csv and no finished epoch in "
                         f"history.csv. Draw it after its first epoch (or its first --log-every steps).")
    after = [r for r in history if not rows or r["step"] > rows[-1]["step"]]  # epochs the rows do not reach
    train = rows + after
    source = "history.csv" if not rows else "steps.csv, then history.csv" if after else "steps.csv"
    return RunCurves(run_dir, model, [r["step"] for r in train], [r["train_top1_err"] for r in train], source,
                     [r["step"] for r in history], [r["val_top1_err"] for r in history])


def _labels(runs):
    """Each run's model name; runs of the same model also get their folder's name."""
    models = [run.model for run in runs]
    return [f"{run.model} ({os.path.basename(os.path.normpath(run.run_dir))})" if models.count(run.model) > 1
            else run.model for run in runs]


def curves_figure(runs, title=None):
    """A figure of `runs` (RunCurves): per run a thin training line and a bold validation line
    in one colour, error in percent against iterations, a legend entry per run (its model);
    `title` goes before the key to the lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    handles = []
    for i, (run, label) in enumerate(zip(runs, _labels(runs))):
        colour = f"C{i % 10}"
        ax.plot(run.train_steps, [100 * e for e in run.train_err], color=colour, linewidth=0.8,
                label=f"{label} (training)")
        valid = [(s, e) for s, e in zip(run.val_steps, run.val_err) if e is not None]
        line, = ax.plot([s for s, _ in valid], [100 * e for _, e in valid], color=colour, linewidth=2.5,
                        marker="o" if len(valid) == 1 else None, label=label)  # one epoch: a point
        handles.append(line)
    key = "thin: training error, bold: validation error"
    ax.set(xlabel="iterations", ylabel="error (%)", title=f"{title}\n{key}" if title else key)
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles)
    return fig


def save_png(fig, path):
    """kzoo.visualize.common.save_figure without its Keras import: atomically, then closed."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def out_path(out, run_dirs):
    """--out as a PNG path: a file ending .png, or a folder (curves.png in it); by default
    RUN/figures/curves.png for one run. Several runs have no folder of their own: --out is
    needed (never ./figures unasked)."""
    if out is None:
        if len(run_dirs) > 1:
            raise ValueError(f"--out FILE.png (or a folder): where the figure of these {len(run_dirs)} runs goes; "
                             f"one run's goes into RUN/figures by default.")
        return os.path.join(run_dirs[0], "figures", "curves.png")
    out = os.fspath(out)
    if os.path.isdir(out):
        return os.path.join(out, "curves.png")
    if not out.lower().endswith(".png"):
        raise ValueError(f"argument --out: {out!r} is neither a folder nor a .png file; give e.g. --out curves.png.")
    return out


def plot(run_dirs, out=None, title=None):
    """Draw `run_dirs` in one figure and write it; returns (the path written, the figure)."""
    runs = [read_run(r) for r in run_dirs]  # a run that cannot be drawn is named first
    path = out_path(out, [os.fspath(r) for r in run_dirs])
    fig = curves_figure(runs, title)
    return save_png(fig, path), fig


@dataclasses.dataclass(frozen=True)
class CurvesOptions:
    """`python -m kzoo.visualize curves`' arguments, declared once (no --verbose: curves loads no TensorFlow)."""

    runs: list = option(positional=True, nargs="+", metavar="RUN", help="training run directories, drawn in this "
                        "order")
    out: str = option(help="the PNG to write, or a folder for curves.png (default for one run: "
                           "RUN/figures/curves.png; needed for several)")
