"""The schedules' mechanics (no TensorFlow needed): patience, a reset on improvement, the
warm-up's switch, and state that survives a checkpoint. The papers' numbers themselves are
tests/test_paper_constants.py's."""

import pytest

from kzoo.recipes import alexnet, resnet_cifar
from kzoo.train.schedules import DivideOnPlateau, StepsAt, WarmupUntilError


def test_plateau_waits_for_its_patience_and_an_improvement_resets_it():
    s = alexnet.RECIPE.schedule("alexnet")
    s.on_epoch_end(0, 0.60)
    for epoch in range(1, 3):  # two epochs without improvement: patience not reached
        s.on_epoch_end(epoch, 0.60)
        assert s.lr(0, epoch) == 0.01
    s.on_epoch_end(3, 0.60)
    assert s.lr(0, 4) == pytest.approx(0.001)
    s.on_epoch_end(4, 0.50)  # an improvement resets the wait
    for epoch in range(5, 7):
        s.on_epoch_end(epoch, 0.50)
        assert s.lr(0, epoch + 1) == pytest.approx(0.001)
    s.on_epoch_end(7, 0.50)
    assert s.lr(0, 8) == pytest.approx(1e-4)


def test_resnet110_warm_up_ends_within_the_window_after_the_error_drops():
    s = resnet_cifar.RECIPE.schedule("resnet110")
    for step in range(200):
        s.on_step_end(step, 0.85)
    for step in range(200, 210):  # ten steps below 80%: not yet
        s.on_step_end(step, 0.75)
    assert s.lr(210, 0) == 0.01
    for step in range(210, 260):  # sixty: switched
        s.on_step_end(step, 0.75)
    assert s.lr(260, 0) == 0.1


@pytest.mark.parametrize("make, probe", [
    (lambda: DivideOnPlateau(0.1, patience=1), (0, 4)),
    (lambda: WarmupUntilError(0.01, StepsAt(0.1, (5,), 0.1, unit="step"), window=2), (3, 4)),
])
def test_schedule_state_round_trip(make, probe):
    a = make()
    for i in range(4):
        a.on_step_end(i, 0.5)
        a.on_epoch_end(i, 0.9)
    b = make()
    assert make().lr(*probe) != a.lr(*probe)  # the state changed the lr: a lost state shows
    b.load_state(a.state())
    assert b.state() == a.state() and b.lr(*probe) == a.lr(*probe)
