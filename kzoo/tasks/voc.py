"""ZFNet §5.2 on PASCAL VOC 2012: a new 20-way classifier on frozen layers 1-7, per-class AP.

The paper trains a softmax although VOC images hold several objects ("not ideal",
§5.2). Here each training image's target is spread evenly over the classes present
in it (k classes: 1/k each), which is the cross-entropy of that soft target; it is
trained as k weighted rows of the image. Difficult-only classes are not targets,
and an image with no other object is left out of the softmax's training. The
alternative `loss="logistic"` trains one sigmoid per class (positives against the
rest, difficult images of that class left out). The paper reports the test server's
numbers; the test labels are not public, so ours are on the val split.
"""

import json
import os

import numpy as np

from kzoo.data.voc import LOSSES
from kzoo.evaluate.metrics import mean_average_precision
from kzoo.tasks.transfer import (claim_results, extract_features, train_logistic, train_softmax, transfer_model,
                                    write_results)
from kzoo.visualize.common import hidden_layer
from kzoo.weights.record import save_weights_atomic

PAPER_MEAN_AP = 79.0  # ZFNet Table 5, VOC 2012 test, 20-way softmax on layers 1-7


def spread_targets(labels):
    """(rows, classes, weights): one row per (image, present class), weighted 1/k for an
    image with k classes present (devkit label 1), so that a weighted softmax fit is the
    cross-entropy against targets spread evenly over each image's classes."""
    positive = np.asarray(labels) == 1
    rows, classes = np.nonzero(positive)
    return rows, classes, 1.0 / positive.sum(1)[rows]


def train_classifier(features, labels, loss="softmax", C=1.0, seed=0):
    """A Keras head of 20 scores on fixed `features` for (N, 20) devkit `labels`."""
    labels = np.asarray(labels)
    if loss == "softmax":
        rows, classes, weights = spread_targets(labels)
        if len(rows) == 0:
            raise ValueError("no training image has a (non-difficult) object: nothing to train on.")
        return train_softmax(features[rows], classes, labels.shape[1], C, seed, sample_weight=weights)
    if loss == "logistic":
        return train_logistic(features, labels == 1, C, seed, ignore=labels == 0)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}.")


def run_voc(trained, data, layer=None, loss="softmax", C=1.0, seed=0, run_dir=None, identity=None):
    """Train on data["train"], report per-class AP and mean AP on data["val"] (Collections
    with devkit labels, kzoo.data.voc). Writes results.json/.md and the transfer model's
    weights in `run_dir`. Returns the results dict."""
    model = trained.model
    layer = layer or hidden_layer(model)
    settings = {"identity": identity, "layer": layer, "loss": loss, "C": C, "seed": seed,
                "images": [len(data[split].images) for split in ("train", "val")]}
    claim_results(run_dir, settings)  # before the features: a refused run costs nothing
    features = {split: extract_features(trained, data[split], [layer], run_dir, identity)[layer]
                for split in ("train", "val")}
    head = train_classifier(features["train"], data["train"].labels, loss, C, seed)
    scores = head.predict(features["val"], verbose=0)
    labels = data["val"].labels
    aps, mean = mean_average_precision(labels == 1, scores, difficult=labels == 0)
    names = data["val"].class_names
    results = {"dataset": "voc2012", "layer": layer, "loss": loss, "C": C, "seed": seed,
               "train_images": len(data["train"].images), "val_images": len(labels),
               "average_precision": {name: (None if np.isnan(ap) else float(ap)) for name, ap in zip(names, aps)},
               "mean_average_precision": mean, "paper_mean_average_precision": PAPER_MEAN_AP / 100,
               "settings": json.loads(json.dumps(settings, default=str))}
    if run_dir:
        os.makedirs(run_dir, exist_ok=True)
        save_weights_atomic(transfer_model(model, layer, head), os.path.join(run_dir, f"voc2012-{loss}.weights.h5"))
        write_results(run_dir, results, results_table(results))
    return results


def results_table(results):
    lines = [f"PASCAL VOC 2012, {results['loss']} on {results['layer']}: trained on train "
             f"({results['train_images']} images), average precision on val ({results['val_images']} images); "
             f"the paper's {PAPER_MEAN_AP} is on the test server", "",
             "| class | AP (ours, val) |", "|---|---|"]
    for name, ap in results["average_precision"].items():
        lines.append(f"| {name} | {'–' if ap is None else f'{ap:.1%}'} |")
    lines.append(f"| **mean** | **{results['mean_average_precision']:.1%}** (paper: {PAPER_MEAN_AP}%, test) |")
    return "\n".join(lines) + "\n"
