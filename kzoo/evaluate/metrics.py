"""The papers' metrics on boxes and rankings: IoU, ILSVRC's localization error, and
average precision as PASCAL VOC 2010-2012 defines it (devkit `VOCevalcls`, `VOCap`),
for classification and, with boxes matched at IoU >= 0.5, for detection (`VOCevaldet`).

Images are ranked by score (highest first; equal scores keep their given order,
as the devkit's sort does). AP is the area under the precision-recall curve after
precision is made monotone: at each recall, the best precision at that recall or
any higher one. Images marked `difficult` for a class (it appears there only in
objects annotated difficult) are neither positives nor negatives: they are left
out of that class's ranking, as the devkit's ground truth 0.
"""

import numpy as np


def _check_class(y_true, y_score, difficult):
    y_true, y_score = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1 or y_true.shape != y_score.shape:
        raise ValueError(f"expected labels and scores of one shape (N,); got {y_true.shape} and {y_score.shape}.")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1 (give difficult images as the `difficult` mask); got values "
                         f"{sorted(set(np.unique(y_true).tolist()) - {0, 1})[:5]}.")
    if not np.isfinite(y_score).all():
        raise ValueError("scores must be finite; some are NaN or infinite.")
    keep = np.ones(len(y_true), bool) if difficult is None else ~np.asarray(difficult, bool)
    if keep.shape != y_true.shape:
        raise ValueError(f"the difficult mask has shape {keep.shape}; expected {y_true.shape}.")
    return y_true[keep].astype(bool), y_score[keep]


def average_precision(y_true, y_score, difficult=None):
    """VOC2012 AP of one class: 0/1 `y_true`, scores `y_score` (higher: more confident),
    optional boolean `difficult` (images ignored for this class). NaN without positives."""
    positive, score = _check_class(y_true, y_score, difficult)
    if not positive.any():
        return float("nan")
    order = np.argsort(-score, kind="stable")
    return _area(positive[order], positive.sum())


def _area(hits, positives):
    """VOCap: the area under the monotone precision-recall curve of a ranked list of hits."""
    tp = np.cumsum(hits)
    recall = tp / positives
    precision = tp / np.arange(1, len(hits) + 1)
    # monotone precision: the best precision at this recall or any later one
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def mean_average_precision(y_true, y_score, difficult=None):
    """Per-class APs of (N, C) 0/1 labels and scores (and an optional (N, C) difficult
    mask) and their mean over the classes that have positives: (aps, mean)."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(f"expected labels and scores of one shape (N, C); got {y_true.shape} and {y_score.shape}.")
    if difficult is not None and np.shape(difficult) != y_true.shape:
        raise ValueError(f"the difficult mask has shape {np.shape(difficult)}; expected {y_true.shape}.")
    aps = np.array([average_precision(y_true[:, c], y_score[:, c], None if difficult is None else
                                      np.asarray(difficult)[:, c]) for c in range(y_true.shape[1])])
    if np.isnan(aps).all():
        raise ValueError("no class has a positive example: mean AP is undefined.")
    return aps, float(np.nanmean(aps))


def iou(a, b):
    """Intersection over union of boxes `a` and `b` ((..., 4) arrays of x1, y1, x2, y2)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def localization_error(top5, box, true_class, true_box):
    """ILSVRC's rule: an error unless the true class is among the top 5 and IoU >= 0.5."""
    return not (true_class in list(top5) and iou(box, true_box) >= 0.5)


def detection_average_precision(detections, truths, min_iou=0.5):
    """AP of one class's detections as VOCevaldet scores them.

    detections: [(image id, score, (x1, y1, x2, y2))] over all images; truths: {image id:
    [((x1, y1, x2, y2), difficult)]} of that class (images without objects may be left
    out). By descending score, each detection takes the true box it overlaps most; at
    IoU >= `min_iou` it is a hit if that box is still unclaimed, a false positive if
    another detection claimed it (a duplicate), ignored if the box is difficult; below,
    a false positive. IoU is on continuous coordinates (the devkit adds 1 pixel to
    widths, for its inclusive integer boxes). NaN when there is no non-difficult box.
    """
    positives = sum(not difficult for objects in truths.values() for _, difficult in objects)
    if positives == 0:
        return float("nan")
    scores = np.array([float(score) for _, score, _ in detections])
    if not np.isfinite(scores).all():
        raise ValueError("detection scores must be finite; some are NaN or infinite.")
    claimed = {image: np.zeros(len(objects), bool) for image, objects in truths.items()}
    hits = []
    for k in np.argsort(-scores, kind="stable"):
        image, _, box = detections[k]
        objects = truths.get(image, [])
        overlaps = iou(np.asarray(box, float)[None], np.array([b for b, _ in objects], float).reshape(-1, 4))
        best = int(np.argmax(overlaps)) if len(objects) else -1
        if best >= 0 and overlaps[best] >= min_iou:
            if objects[best][1]:
                continue  # a difficult box: neither a hit nor a false positive
            hits.append(not claimed[image][best])
            claimed[image][best] = True
        else:
            hits.append(False)
    return _area(np.array(hits, bool), positives) if hits else 0.0


def detection_mean_average_precision(detections, truths, classes, min_iou=0.5):
    """Per-class detection APs and their mean over classes with objects.
    detections: [(image id, class, score, box)]; truths: {image id: [(box, class, difficult)]}."""
    aps = []
    for c in range(classes):
        mine = [(image, score, box) for image, label, score, box in detections if label == c]
        boxes = {image: [(box, difficult) for box, label, difficult in objects if label == c]
                 for image, objects in truths.items()}
        aps.append(detection_average_precision(mine, boxes, min_iou))
    aps = np.array(aps)
    if np.isnan(aps).all():
        raise ValueError("no class has a (non-difficult) true box: detection mean AP is undefined.")
    return aps, float(np.nanmean(aps))
