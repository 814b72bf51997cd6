"""OverFeat detection: the detection AP as the VOC devkit scores it (VOCevaldet)."""

import numpy as np
import pytest

from kzoo.evaluate.precision import detection_average_precision, detection_mean_average_precision, iou

A, B = (0, 0, 10, 10), (20, 20, 30, 30)


def test_detection_ap_of_hand_made_cases():
    truths = {"im1": [(A, False), (B, False)]}
    # ranked: A (hit), A again (duplicate: false positive), B (hit), nothing there (false positive)
    detections = [("im1", 0.9, A), ("im1", 0.8, (1, 0, 11, 10)), ("im1", 0.7, B), ("im1", 0.6, (40, 40, 50, 50))]
    # precisions 1, 1/2, 2/3, 1/2 at recalls 1/2, 1/2, 1, 1; monotone: 1 then 2/3
    assert detection_average_precision(detections, truths) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # below IoU 0.5 is a miss: (4, 0, 14, 10) overlaps A by 6 / 14
    assert iou((4, 0, 14, 10), A) == pytest.approx(60 / 140)
    assert detection_average_precision([("im1", 0.9, (4, 0, 14, 10)), ("im1", 0.8, B)], truths) == pytest.approx(0.25)
    # a detection in an image without objects is a false positive: precisions 0, 1/2, 2/3; monotone 2/3
    assert detection_average_precision([("im2", 0.95, A), ("im1", 0.9, A), ("im1", 0.8, B)], truths) == \
        pytest.approx(2 / 3)
    # nothing found: AP 0; no true box: undefined
    assert detection_average_precision([], truths) == 0.0
    assert np.isnan(detection_average_precision([("im1", 0.9, A)], {"im1": []}))


def test_detection_ap_difficult_boxes_and_the_max_overlap_rule():
    # a detection on a difficult box is neither a hit nor a false positive
    truths = {"im1": [(A, False), (B, True)]}
    assert detection_average_precision([("im1", 0.9, B), ("im1", 0.8, A)], truths) == 1.0
    assert detection_average_precision([("im1", 0.9, (40, 40, 50, 50)), ("im1", 0.8, A)], truths) == 0.5
    # each detection takes the box it overlaps most, even if that box is already claimed
    C = (0, 2, 10, 12)  # overlaps A by 80 / 120
    truths = {"im1": [(A, False), (C, False)]}
    second = (0, 0.5, 10, 10.5)  # IoU 0.905 with A, 0.7 with C
    assert iou(second, A) > iou(second, C) >= 0.5
    assert detection_average_precision([("im1", 0.9, A), ("im1", 0.8, second)], truths) == pytest.approx(0.5)


def _devkit_det_ap(detections, truths):
    """VOCevaldet's loop and VOCap, transliterated (continuous IoU)."""
    npos = sum(not d for objects in truths.values() for _, d in objects)
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])
    detected = {k: [False] * len(v) for k, v in truths.items()}
    tp, fp = [], []
    for i in order:
        image, _, box = detections[i]
        ovmax, jmax = -np.inf, None
        for j, (gt, _) in enumerate(truths.get(image, [])):
            bi = [max(box[0], gt[0]), max(box[1], gt[1]), min(box[2], gt[2]), min(box[3], gt[3])]
            iw, ih = bi[2] - bi[0], bi[3] - bi[1]
            if iw > 0 and ih > 0:
                ua = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= 0.5:
            if not truths[image][jmax][1]:
                if not detected[image][jmax]:
                    tp.append(1), fp.append(0)
                    detected[image][jmax] = True
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, 1e-300)
    mrec, mpre = np.concatenate([[0], rec, [1]]), np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def test_detection_ap_equals_the_devkit_loop_on_random_scenes():
    rng = np.random.default_rng(0)
    for _ in range(30):
        truths, detections = {}, []
        for image in range(int(rng.integers(1, 6))):
            objects = []
            for _ in range(int(rng.integers(0, 4))):
                x, y, s = rng.uniform(0, 80), rng.uniform(0, 80), rng.uniform(8, 30)
                objects.append(((x, y, x + s, y + s), bool(rng.random() < 0.15)))
                for _ in range(int(rng.integers(0, 3))):  # detections near it, duplicates included
                    jitter = rng.normal(0, s / 5, 4)
                    detections.append((image, float(rng.random()), tuple(np.add((x, y, x + s, y + s), jitter))))
            truths[image] = objects
            for _ in range(int(rng.integers(0, 3))):  # and false alarms anywhere
                x, y = rng.uniform(0, 80, 2)
                detections.append((image, float(rng.random()), (x, y, x + 15, y + 15)))
        if not any(not d for objects in truths.values() for _, d in objects):
            continue
        assert detection_average_precision(detections, truths) == pytest.approx(_devkit_det_ap(detections, truths))


def test_detection_mean_ap_over_classes():
    truths = {"im1": [(A, 0, False), (B, 1, False)], "im2": [(B, 0, False)]}
    detections = [("im1", 0, 0.9, A), ("im2", 0, 0.5, B), ("im1", 1, 0.8, A), ("im1", 1, 0.7, B)]
    aps, mean = detection_mean_average_precision(detections, truths, classes=3)
    assert aps[0] == 1.0 and aps[1] == pytest.approx(0.5) and np.isnan(aps[2])  # class 2: no boxes
    assert mean == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no class has"):
        detection_mean_average_precision(detections, {"im1": []}, classes=2)
