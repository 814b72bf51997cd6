"""The papers' learning-rate schedules, as small stateful objects the engine drives.

Every schedule answers `lr(step, epoch)` and hears `on_step_end(step, train_error)`
and `on_epoch_end(epoch, val_error)`; `stop(step, epoch)` says whether the paper's
schedule ends training. State (plateau counters, warm-up) is a JSON dict, saved
in every checkpoint so that a resumed run continues the same schedule.
"""

import abc
import dataclasses
import math


class Schedule(abc.ABC):
    @abc.abstractmethod
    def lr(self, step, epoch):
        """The learning rate for this step (0-based step and epoch)."""

    def on_step_end(self, step, train_error):
        pass

    def on_epoch_end(self, epoch, val_error):
        pass

    def stop(self, step, epoch):
        return False

    def state(self):
        return {}

    def load_state(self, state):
        for key, value in state.items():
            setattr(self, key, value)

    @abc.abstractmethod
    def describe(self):
        """One line for --print-schedule and the run's config."""


@dataclasses.dataclass
class DivideOnPlateau(Schedule):
    """Divide by `factor` when validation error stops improving, at most `times` times.

    AlexNet §5: lr 0.01 "divided by 10 when the validation error rate stopped
    improving", three times in all. "Stopped improving" (the paper gives no
    rule): no improvement of at least `min_delta` for `patience` epochs.
    """

    initial: float
    factor: float = 0.1
    times: int = 3
    patience: int = 3
    min_delta: float = 1e-3
    stop_at: int = None  # iterations (ResNet: 60e4)
    reductions: int = 0
    best: float = math.inf
    waited: int = 0

    def lr(self, step, epoch):
        return self.initial * self.factor**self.reductions

    def on_epoch_end(self, epoch, val_error):
        if val_error is None:
            return
        if val_error < self.best - self.min_delta:
            self.best, self.waited = val_error, 0
            return
        self.waited += 1
        if self.waited >= self.patience and (self.times is None or self.reductions < self.times):
            self.reductions, self.waited = self.reductions + 1, 0

    def stop(self, step, epoch):
        return self.stop_at is not None and step >= self.stop_at

    def state(self):
        return {"reductions": self.reductions, "best": self.best, "waited": self.waited}

    def describe(self):
        stop = f", stop at iteration {self.stop_at}" if self.stop_at is not None else ""
        times = f"at most {self.times} times" if self.times is not None else "each time"
        return (f"lr {self.initial:g}, divided by {1 / self.factor:g} when validation error has not "
                f"improved by {self.min_delta:g} for {self.patience} epochs, {times}{stop}")


@dataclasses.dataclass
class StepsAt(Schedule):
    """Multiply by `factor` at each boundary; boundaries count epochs or iterations.

    OverFeat: 5e-2 halved at epochs 30, 50, 60, 70, 80. CIFAR ResNets (§4.2):
    0.1 divided by 10 at 32k and 48k iterations, stopped at 64k (`stop_at`).
    """

    initial: float
    boundaries: tuple
    factor: float
    unit: str = "epoch"  # or "step"
    stop_at: int = None  # in `unit`s

    def _position(self, step, epoch):
        return epoch if self.unit == "epoch" else step

    def lr(self, step, epoch):
        passed = sum(self._position(step, epoch) >= b for b in self.boundaries)
        return self.initial * self.factor**passed

    def stop(self, step, epoch):
        return self.stop_at is not None and self._position(step, epoch) >= self.stop_at

    def describe(self):
        stop = f", stop at {self.unit} {self.stop_at}" if self.stop_at is not None else ""
        return (f"lr {self.initial:g}, x{self.factor:g} at {self.unit}s "
                f"{', '.join(str(b) for b in self.boundaries)}{stop}")


@dataclasses.dataclass
class WarmupUntilError(Schedule):
    """Train at `warmup_lr` until the training error drops below `below`, then `then`.

    ResNet-110 on CIFAR (§4.2): 0.01 until training error < 80% (about 400
    iterations), then back to 0.1. Training error is the mean top-1 error of
    the last `window` steps.
    """

    warmup_lr: float
    then: Schedule
    below: float = 0.8
    window: int = 50
    warm: bool = True
    recent: list = dataclasses.field(default_factory=list)

    def lr(self, step, epoch):
        return self.warmup_lr if self.warm else self.then.lr(step, epoch)

    def on_step_end(self, step, train_error):
        if not self.warm:
            return self.then.on_step_end(step, train_error)
        self.recent = (self.recent + [float(train_error)])[-self.window:]
        if len(self.recent) == self.window and sum(self.recent) / self.window < self.below:
            self.warm = False

    def on_epoch_end(self, epoch, val_error):
        if not self.warm:
            self.then.on_epoch_end(epoch, val_error)

    def stop(self, step, epoch):
        return self.then.stop(step, epoch)

    def state(self):
        return {"warm": self.warm, "recent": list(self.recent), "then": self.then.state()}

    def load_state(self, state):
        self.warm, self.recent = state["warm"], list(state["recent"])
        self.then.load_state(state["then"])

    def describe(self):
        return (f"lr {self.warmup_lr:g} until training error < {self.below:.0%} "
                f"(mean of {self.window} steps), then {self.then.describe()}")
