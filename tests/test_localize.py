"""OverFeat localization: box arithmetic, greedy merge, and a regressor that must localize."""

import keras
import numpy as np
import pytest

import kzoo
from kzoo.evaluate.localize import iou, localization_error, match_score, merge_boxes, train_regressor


def test_iou_and_the_ilsvrc_error_rule():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert not localization_error([3, 1, 2, 7, 9], [0, 0, 10, 10], 7, [1, 1, 10, 10])
    assert localization_error([3, 1, 2, 7, 9], [0, 0, 10, 10], 4, [1, 1, 10, 10])  # class not in top 5
    assert localization_error([3, 1, 2, 7, 9], [0, 0, 10, 10], 7, [5, 0, 15, 10])  # IoU 1/3


def test_greedy_merge_follows_the_match_score_and_threshold():
    a, b, far = [0, 0, 10, 10], [2, 0, 12, 10], [100, 100, 110, 110]
    assert match_score(a, b) == pytest.approx(2 + 80)  # centre distance + intersection area
    boxes, conf = merge_boxes([a, b, far], [0.5, 0.25, 0.9], threshold=100)
    assert len(boxes) == 2
    np.testing.assert_allclose(boxes[1], [1, 0, 11, 10])  # the mean of the merged pair
    assert conf.tolist() == [0.9, 0.75]  # confidences accumulate; most confident first
    assert len(merge_boxes([a, b, far], [1, 1, 1], threshold=50)[0]) == 3  # 82 >= 50: nothing merges


def _objects(n, size, rng):
    """Noise images with one coloured square each; the colour is the class."""
    images = rng.normal(0, 20, size=(n, size, size, 3)).astype("float32")
    boxes, labels = [], []
    for image in images:
        side = rng.integers(size * 3 // 10, size * 6 // 10)
        y, x = rng.integers(0, size - side, 2)
        label = rng.integers(0, 3)
        image[y : y + side, x : x + side, label] += 150
        boxes.append([x, y, x + side, y + side])
        labels.append(label)
    return images, np.array(boxes, "float32"), np.array(labels)


@pytest.mark.slow
def test_trained_regressor_localizes_most_generated_objects():
    keras.utils.set_random_seed(0)  # the frozen random features, whatever ran before
    rng = np.random.default_rng(0)
    size = 160
    model = kzoo.overfeat_fast(input_shape=(size, size, 3), classes=3)  # frozen features, as in §4
    train_x, train_boxes, train_labels = _objects(500, size, rng)
    test_x, test_boxes, test_labels = _objects(100, size, rng)
    localizer = train_regressor(model, train_x, train_boxes, train_labels, classes=3, hidden=(512, 128),
                                scales=(1.0, 1.2), offsets=2, epochs=40)
    pred = localizer.predict(test_x, test_labels)
    hits = iou(pred, test_boxes) >= 0.5
    assert hits.mean() > 0.5, hits.mean()  # "most"; measured 0.86
    box = localizer.localize(test_x[0], test_labels[0], scales=(1.0, 1.2))
    assert box.shape == (4,) and (box[2:] > box[:2]).all() and (box >= 0).all() and (box <= size).all()
