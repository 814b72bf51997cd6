"""A run directory's logs: CSV history, TensorBoard scalars, PNG curves, final metrics,
and the training error every N steps (steps.csv).

Everything is rewritten from the full history after each epoch (atomically),
so a resumed run's files are the same as an uninterrupted run's. steps.csv grows
a row at a time; a resumed run first cuts it back to its checkpoint's step.
"""

import csv
import io
import json
import os

from kzoo.utils.files import atomic_write

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err")
STEP_COLUMNS = ("step", "epoch", "train_top1_err", "train_loss", "lr")


class RunLog:
    def __init__(self, run_dir, enabled=True):
        self.run_dir, self.enabled = run_dir, enabled
        self._writer = None

    def epoch_end(self, history):
        if not self.enabled:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        with atomic_write(os.path.join(self.run_dir, "history.csv")) as f:
            f.write(buffer.getvalue())
        self._tensorboard(history[-1])
        plot_curves(history, os.path.join(self.run_dir, "curves.png"))

    def _tensorboard(self, record):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.run_dir, "tensorboard"))
        with self._writer.as_default():
            for key, value in record.items():
                if key not in ("epoch", "step") and value is not None:
                    tf.summary.scalar(key, value, step=record["epoch"])
        self._writer.flush()

    def finish(self, metrics):
        if not self.enabled:
            return
        with atomic_write(os.path.join(self.run_dir, "metrics.json")) as f:
            json.dump(metrics, f, indent=2)


class StepLog:
    """RUN/steps.csv: a row every `every` steps (0: none) with the training top-1 error and
    the loss over the batches since the previous row (global over all replicas: the engine
    passes the reduced sums), the epoch the step belongs to (from 1) and the lr in use."""

    def __init__(self, run_dir, every, enabled=True):
        self.path = os.path.join(run_dir, "steps.csv")
        self.every, self.enabled = every, enabled
        self.rows = []
        self.sums = [0.0, 0.0, 0]  # loss, wrong, images since the last row

    def resume(self, step, sums=None):
        """Start at the checkpoint's `step` with its window `sums`: rows after it are dropped
        (the resumed run repeats those steps), so each step is logged once."""
        self.sums = list(sums) if sums else [0.0, 0.0, 0]
        self.rows = [row for row in read_steps(self.path) if row["step"] <= step]
        if self.enabled and os.path.exists(self.path):
            with atomic_write(self.path) as f:
                f.write(_csv_text(self.rows, header=True))

    def add(self, step, epoch, loss, wrong, images, lr):
        """One training step's summed loss and wrong count over `images`; writes a row at
        every `every`-th step."""
        self.sums = [self.sums[0] + loss, self.sums[1] + wrong, self.sums[2] + images]
        if not self.every or step % self.every:
            return
        loss_sum, wrong_sum, seen = self.sums
        row = {"step": step, "epoch": epoch, "train_top1_err": wrong_sum / seen, "train_loss": loss_sum / seen,
               "lr": lr}
        self.rows.append(row)
        self.sums = [0.0, 0.0, 0]
        if self.enabled:
            new = not os.path.exists(self.path)
            with open(self.path, "a", encoding="utf-8") as f:  # one write per row: a kill cuts no row
                f.write(_csv_text([row], header=new))

    def sync(self):
        """Put the rows on disk before a checkpoint that counts them is written."""
        if self.enabled and os.path.exists(self.path):
            with open(self.path, "rb+") as f:
                os.fsync(f.fileno())


def _csv_text(rows, header):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, STEP_COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_steps(path):
    """steps.csv's rows as numbers ([] when there is no file); a row cut short by a crash is left out."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append({"step": int(line["step"]), "epoch": int(line["epoch"]),
                         **{key: float(line[key]) for key in STEP_COLUMNS[2:]}})
        except (TypeError, ValueError):
            continue
    return rows


def read_history(path):
    """history.csv's rows as numbers (None where a value is empty); [] when there is no file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = list(csv.DictReader(f))
    except FileNotFoundError:
        return []
    kinds = {"epoch": int, "step": int}
    try:
        return [{key: kinds.get(key, float)(value) if value not in ("", None) else None
                 for key, value in line.items()} for line in lines]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} is damaged ({err}); restore it from a copy of the run directory (training "
                         f"rewrites it at each epoch's end).") from None


def first_below(level, rows, history):
    """When the training top-1 error first fell below `level` (AlexNet Fig. 1: 25%).

    epoch: the first history.csv epoch whose training error is below `level`.
    step: the first steps.csv row below `level`; when no row is (no rows at all, or the
    rows stop before the error got there: logging off or a run shorter than --log-every
    steps), the end step of that epoch from history.csv. Each is None where it was never
    reached, so a step is given whenever an epoch is."""
    epoch = next((r for r in history if r["train_top1_err"] < level), None)
    step = next((r["step"] for r in rows if r["train_top1_err"] < level), None)
    if step is None and epoch:
        step = epoch["step"]
    return {"level": level, "step": step, "epoch": epoch["epoch"] if epoch else None}


def plot_curves(history, path):
    """Loss and top-1/top-5 error against epochs, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        ax_loss.plot(epochs, [r.get(key) for r in history], marker="o", label=label)
    for key, label in (("train_top1_err", "train top-1"), ("val_top1_err", "val top-1"),
                       ("val_top5_err", "val top-5")):
        ax_err.plot(epochs, [r.get(key) for r in history], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_err.set(xlabel="epoch", ylabel="error", title="error", ylim=(0, 1))
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.92, wspace=0.2)  # tight_layout: 1/3 of the time
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
