"""Average precision as PASCAL VOC 2010-2012 defines it (devkit `VOCevalcls`, `VOCap`).

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
    tp = np.cumsum(positive[order])
    recall = tp / positive.sum()
    precision = tp / np.arange(1, len(order) + 1)
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
