"""Checkpoints that survive any kill (the lock that keeps one process per run directory is
kzoo.train.rundir's).

A checkpoint at step N is TensorFlow's `ckpt-N.index` + `ckpt-N.data-*` (model and
optimizer) and `ckpt-N.json` (the loop's state); `latest.json` repeats the newest
state. Each is complete before the next is written (TensorFlow writes into
`ckpt-N_temp/` and renames, the JSON files go through atomic_write), so a kill at
any moment leaves at worst leftovers, which the next run removes. A damaged newest
checkpoint falls back to the previous one (two are kept) and is moved aside.
"""

import errno
import json
import os
import re
import shutil
import tempfile

import keras
import tensorflow as tf

from kzoo.train.rundir import CheckpointError
from kzoo.train.strategies import is_chief, task_id
from kzoo.utils.files import atomic_write

_FILE = re.compile(r"^ckpt-(\d+)\.(index|json|data-\d+-of-\d+)$")
_LEFTOVER = re.compile(r"^(ckpt-\d+_temp.*|\.tmp-.*)$")  # a killed TF write / atomic_write


class Checkpoints:
    """Model + optimizer (tf.train.Checkpoint) and the loop's state (JSON) of one run."""

    def __init__(self, run_dir, keep=2, verbose=1, read_only=False, **objects):
        """`read_only`: for readers beside a run that may still be training (evaluate):
        nothing in the folder is removed, moved or rewritten."""
        self.folder = os.path.join(run_dir, "checkpoints")
        self.keep = keep
        self.verbose = verbose
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.chief = is_chief()
        self.writes = self.chief and not read_only

    def latest(self):
        """The state `latest.json` names, or None before the first checkpoint."""
        return read_record(os.path.join(self.folder, "latest.json"))

    def save(self, state):
        step = state["step"]
        if not self.chief:  # every worker must take part in the save; only the chief's stays
            scratch = tempfile.mkdtemp(prefix=f"kzoo-{task_id()}-")
            self.checkpoint.write(os.path.join(scratch, "ckpt"))
            shutil.rmtree(scratch, ignore_errors=True)
            return
        try:
            os.makedirs(self.folder, exist_ok=True)
            prefix = self.checkpoint.write(os.path.join(self.folder, f"ckpt-{step}"))
            record = {**state, "prefix": os.path.basename(prefix)}
            for name in (f"ckpt-{step}.json", "latest.json"):
                with atomic_write(os.path.join(self.folder, name)) as f:
                    json.dump(record, f, indent=1)
        except (OSError, tf.errors.OpError) as err:
            if not _out_of_space(err):
                raise
            kept = self.latest()  # only a failed write reads it: the record is written whole or not at all
            newest = f"step {kept['step']}" if kept else "none yet"
            raise CheckpointError(
                f"no space left on the disk of {self.folder} while writing the checkpoint of step {step}: the run "
                f"stopped there. Its newest complete checkpoint ({newest}) is kept; free some space and rerun the "
                f"same command to resume from it.") from None
        self._prune(keep_newest=self.keep)

    def restore(self):
        """Load the newest intact checkpoint; returns its loop state, or None if there is none."""
        if not os.path.isdir(self.folder):
            return None
        latest_path = os.path.join(self.folder, "latest.json")
        latest = self.latest()  # a damaged latest.json raises, naming itself
        if self.writes:
            remove_leftovers(self.folder)
        candidates = self._states(latest)
        newest = max((s for s, _ in candidates), default=-1)
        unrecorded = [step for step in self._steps() if step > newest]
        if unrecorded:  # tensors written, their loop state not: a write cut short (a kill, a full disk)
            names = ", ".join(f"ckpt-{step}" for step in sorted(unrecorded))
            for step in unrecorded:
                self._set_aside(step, "unfinished-")
            where = f"ckpt-{candidates[0][0]}" if candidates else "the start"
            aside = " (set aside as unfinished-*)" if self.writes else ""
            self._say(f"checkpoint {names} has no loop state: its write was cut short{aside}; going on from {where}.")
        if not candidates:
            if latest is not None or (self._steps() and not unrecorded):
                raise CheckpointError(
                    f"{self.folder} holds checkpoint files but no loop state for any of them "
                    f"({', '.join(sorted(os.listdir(self.folder)))}); nothing can be resumed. "
                    f"Start afresh with another --run-dir (this one is left as it is)."
                )
            return None
        if latest is None:
            self._say(f"{latest_path} is missing; recovering from the newest intact checkpoint.")
        damaged = []
        for step, state in candidates:
            prefix = os.path.join(self.folder, state["prefix"])
            try:
                self.checkpoint.read(prefix).assert_consumed()
            except (tf.errors.OpError, IndexError) as err:  # bad magic, checksum, "read less bytes"
                damaged.append(f"{state['prefix']} ({_first_line(err)})")
                self._set_aside(step)
                continue
            except (ValueError, AssertionError) as err:  # another shape or other variables: not damage
                raise CheckpointError(
                    f"checkpoint {prefix} does not fit this model (it was written by another architecture "
                    f"or with other options): {_first_line(err)}"
                ) from None
            if damaged:
                aside = " moved aside as damaged-*" if self.writes else ""
                self._say(f"damaged checkpoint {'; '.join(damaged)}{aside}; using {state['prefix']} "
                          f"(step {step}), the newest intact one.")
            if (latest is None or damaged or latest.get("step") != step) and self.writes:
                with atomic_write(latest_path) as f:
                    json.dump(state, f, indent=1)
            return state
        raise CheckpointError(
            f"no intact checkpoint in {self.folder}: {'; '.join(damaged)}. Start afresh with another --run-dir."
        )

    def _steps(self):
        """{step: set of file kinds present} for the checkpoint files in the folder."""
        steps = {}
        for name in os.listdir(self.folder):
            match = _FILE.match(name)
            if match:
                kind = "data" if match.group(2).startswith("data") else match.group(2)
                steps.setdefault(int(match.group(1)), set()).add(kind)
        return steps

    def _states(self, latest):
        """[(step, state)] of the complete checkpoints, newest first. Runs written before
        ckpt-N.json existed have their state in latest.json only."""
        out = []
        for step, kinds in sorted(self._steps().items(), reverse=True):
            if not {"index", "data"} <= kinds:
                continue
            if "json" in kinds:
                try:
                    state = read_record(os.path.join(self.folder, f"ckpt-{step}.json"), step)
                except CheckpointError as err:
                    if err.foreign:  # not damage: a record that names other files is refused
                        raise
                    continue
            elif latest is not None and latest.get("step") == step:
                state = latest
            else:
                continue
            out.append((step, state))
        return out

    def _prune(self, keep_newest):
        complete = [step for step, _ in self._states(self.latest())][:keep_newest]
        for name in os.listdir(self.folder):
            match = _FILE.match(name)
            if match and int(match.group(1)) not in complete:
                os.remove(os.path.join(self.folder, name))

    def _set_aside(self, step, tag="damaged-"):
        if not self.writes:
            return
        for name in os.listdir(self.folder):
            match = _FILE.match(name)
            if match and int(match.group(1)) == step:
                os.replace(os.path.join(self.folder, name), os.path.join(self.folder, tag + name))

    def _say(self, message):
        if self.verbose and self.chief:
            print(message)


def restore_model(run_dir, model, loss_scale=False):
    """Load a run's latest weights into `model` (built like the run's model, in any precision:
    the variables are float32 in each).

    The weights are saved through the optimizer that holds them, so the same
    kind of optimizer is rebuilt to read them back (`loss_scale`: the run trained in float16)."""
    optimizer = keras.optimizers.SGD(momentum=0.9)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    state = Checkpoints(run_dir, read_only=True, model=model, optimizer=optimizer).restore()
    if state is None:
        raise FileNotFoundError(f"{run_dir!r} holds no checkpoint yet (no checkpoints/latest.json).")
    return state


def remove_leftovers(folder):
    """Remove what a killed write left in `folder` (only names kzoo's writers use)."""
    for name in os.listdir(folder):
        if _LEFTOVER.match(name):
            path = os.path.join(folder, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


_RESUME_ADVICE = "Delete it and rerun the same command: the run resumes from its newest intact checkpoint."


def read_json(path, advice=_RESUME_ADVICE):
    """A run's JSON file, or None if it does not exist; a damaged one is an error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is damaged ({err}). {advice}") from None


_RECORD_KEYS = {"step": int, "epoch": int, "batch_in_epoch": int, "history": list, "prefix": str}


def read_record(path, step=None, advice=_RESUME_ADVICE):
    """A checkpoint record (latest.json, ckpt-N.json): the loop's state and the name of its
    tensors, which must be the run's own `ckpt-<step>` beside it. None if it does not exist."""
    record = read_json(path, advice)
    if record is None and not os.path.exists(path):
        return None
    wrong = [k for k, kind in _RECORD_KEYS.items()
             if not isinstance(record, dict) or not isinstance(record.get(k), kind) or isinstance(record.get(k), bool)]
    if wrong:
        found = type(record).__name__ if not isinstance(record, dict) else f"no valid {', '.join(wrong)}"
        raise CheckpointError(f"{path} is damaged (not a kzoo checkpoint record: {found}). {advice}")
    own = f"ckpt-{record['step']}"
    if record["prefix"] != own or (step is not None and record["step"] != step):
        err = CheckpointError(
            f"{path} names the tensors {record['prefix']!r} (step {record['step']}), not its own {own!r}"
            f"{'' if step is None else f' of step {step}'}: kzoo reads only the checkpoints in the run's own "
            f"folder. Restore the run's own record, or start afresh with another --run-dir.")
        err.foreign = True
        raise err
    return record


def _out_of_space(err):
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(getattr(err, "message", err))
    return "No space left on device" in text or "Disk quota exceeded" in text


def _first_line(err):
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
