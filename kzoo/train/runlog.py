"""A run directory's logs: CSV history, TensorBoard scalars, PNG curves, final metrics.

Everything is rewritten from the full history after each epoch (atomically),
so a resumed run's files are the same as an uninterrupted run's.
"""

import csv
import io
import json
import os

from kzoo.utils.files import atomic_write

COLUMNS = ("epoch", "step", "lr", "train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err")


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
