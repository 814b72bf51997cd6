"""Each paper's learning rate at its boundaries (no TensorFlow needed)."""

import pytest

from kzoo.recipes import alexnet, overfeat, resnet, resnet_cifar, zfnet
from kzoo.train.schedules import DivideOnPlateau, StepsAt, WarmupUntilError


def test_alexnet_divides_by_10_on_plateau_three_times():
    s = alexnet.RECIPE.schedule("alexnet")
    assert s.lr(0, 0) == 0.01  # §5
    s.on_epoch_end(0, 0.60)
    for epoch in range(1, 3):  # two epochs without improvement: patience not reached
        s.on_epoch_end(epoch, 0.60)
        assert s.lr(0, epoch) == 0.01
    s.on_epoch_end(3, 0.60)
    assert s.lr(0, 4) == pytest.approx(0.001)
    s.on_epoch_end(4, 0.50)  # improvement resets the wait
    lrs = []
    for epoch in range(5, 30):
        s.on_epoch_end(epoch, 0.50)
        lrs.append(s.lr(0, epoch))
    assert min(lrs) == pytest.approx(1e-5) and s.reductions == 3  # three times in all


def test_overfeat_halves_at_30_50_60_70_80():
    s = overfeat.RECIPE.schedule("overfeat_fast")
    expected = {0: 5e-2, 29: 5e-2, 30: 2.5e-2, 49: 2.5e-2, 50: 1.25e-2, 60: 6.25e-3, 70: 3.125e-3,
                79: 3.125e-3, 80: 1.5625e-3, 89: 1.5625e-3}
    for epoch, lr in expected.items():
        assert s.lr(10**6, epoch) == pytest.approx(lr), epoch


def test_cifar_steps_at_32k_48k_and_stops_at_64k():
    s = resnet_cifar.RECIPE.schedule("resnet56")
    for step, lr in {0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001}.items():
        assert s.lr(step, 0) == pytest.approx(lr), step
    assert not s.stop(63_999, 0) and s.stop(64_000, 0)


def test_resnet110_warms_up_until_training_error_below_80_percent():
    s = resnet_cifar.RECIPE.schedule("resnet110")
    assert isinstance(s, WarmupUntilError)
    assert s.lr(0, 0) == 0.01
    for step in range(200):
        s.on_step_end(step, 0.85)
    assert s.lr(200, 0) == 0.01
    for step in range(200, 260):
        s.on_step_end(step, 0.75)
    assert s.lr(260, 0) == 0.1  # then the ordinary schedule, counted from the start
    assert s.lr(32_000, 0) == pytest.approx(0.01)
    assert resnet_cifar.RECIPE.schedule("resnet56").lr(0, 0) == 0.1  # only 110/1202 warm up


def test_resnet_imagenet_plateau_and_600k_stop():
    s = resnet.RECIPE.schedule("resnet50")
    assert s.lr(0, 0) == 0.1 and s.times is None
    assert not s.stop(599_999, 0) and s.stop(600_000, 0)
    assert zfnet.RECIPE.schedule("zfnet").lr(0, 0) == 0.01


@pytest.mark.parametrize("make", [
    lambda: DivideOnPlateau(0.1, patience=1),
    lambda: WarmupUntilError(0.01, StepsAt(0.1, (5,), 0.1, unit="step"), window=2),
])
def test_schedule_state_round_trip(make):
    a = make()
    for i in range(4):
        a.on_step_end(i, 0.5)
        a.on_epoch_end(i, 0.9)
    b = make()
    b.load_state(a.state())
    assert b.state() == a.state() and b.lr(7, 4) == a.lr(7, 4)
