"""OverFeat localization (§4): a box regressor on frozen layer-5 features, greedy merging.

Boxes are (x1, y1, x2, y2) in pixels. The regressor sees the pooled layer-5 map
of a window (what the classifier's first FC layer sees), has two hidden layers
(4096 and 1024 in the paper) and outputs 4 box edges, or 4 per class
(class-specific). It trains with an L2 loss on windows taken at several scales
and offsets, the feature layers frozen.
"""

import json
import os

import numpy as np

import keras

from kzoo import preprocessing
from kzoo.data.sources import boxed_examples
from kzoo.evaluate.fcn import layer_index
from kzoo.evaluate.metrics import iou, localization_error
from kzoo.inference import load
from kzoo.models.features import feature_extractor
from kzoo.utils.files import atomic_write
from kzoo.utils.graphs import released_custom_gradients
from kzoo.utils.progress import progress_bar
from kzoo.weights.record import save_weights_atomic


class NoBoxPredicted(ValueError):
    """Every window of an image predicted an empty box."""


def match_score(a, b):
    """OverFeat §4.3: distance between the centres plus the intersection area."""
    centre = lambda r: np.array([(r[0] + r[2]) / 2, (r[1] + r[3]) / 2])  # noqa: E731
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(np.linalg.norm(centre(a) - centre(b)) + ix * iy)


MATCHES = ("paper", "overlap")


def _match_matrix(a, b, match):
    """Match scores of every box of `a` (n, 4) against every box of `b` (m, 4): the paper's
    (`match_score`), or "overlap", 1 - IoU (lower: more alike, as the paper's)."""
    if match == "overlap":
        return 1.0 - iou(a[:, None], b[None])
    centre = lambda r: np.stack([(r[:, 0] + r[:, 2]) / 2, (r[:, 1] + r[:, 3]) / 2], axis=1)  # noqa: E731
    distance = np.linalg.norm(centre(a)[:, None] - centre(b)[None], axis=-1)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return distance + ix * iy


def merge_boxes(boxes, scores, threshold, match="paper", weighted=False):
    """Greedy merge (§4.3): while the two boxes with the lowest match score score below
    `threshold`, replace them by the mean of their coordinates, with the sum of their
    scores as confidence. Returns (boxes, confidences), most confident first.

    match: "paper" (`match_score`, as printed) or "overlap" (1 - IoU: duplicates of one
    object merge; threshold 0.5 merges pairs overlapping by IoU > 0.5)."""
    if match not in MATCHES:
        raise ValueError(f"unknown match {match!r}; expected one of {MATCHES}.")
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    scores = np.asarray(scores, float).reshape(-1)
    matrix = _match_matrix(boxes, boxes, match)
    # only pairs i < j count; ties go to the lowest (i, j), as sorting (score, i, j) would
    matrix[np.tril_indices(len(boxes))] = np.inf
    while len(boxes) > 1:
        i, j = np.unravel_index(np.argmin(matrix), matrix.shape)
        if matrix[i, j] >= threshold:
            break
        score = scores[i] + scores[j]
        merged = (boxes[i] * scores[i] + boxes[j] * scores[j]) / score if weighted else (boxes[i] + boxes[j]) / 2
        keep = np.ones(len(boxes), bool)
        keep[[i, j]] = False
        boxes, scores = np.concatenate([boxes[keep], merged[None]]), np.append(scores[keep], score)
        column = _match_matrix(boxes[:-1], merged[None], match)[:, 0]
        matrix = np.pad(matrix[keep][:, keep], ((0, 1), (0, 1)), constant_values=np.inf)
        matrix[:-1, -1] = column  # the merged box is last: it pairs as j with every other
    order = np.argsort(scores)[::-1]
    return boxes[order], scores[order]


def feature_model(model):
    """`model`'s frozen layers up to its pooled layer-5 map (the input of `flatten`):
    a `feature_extractor` whose one output is that map."""
    flatten = model.layers[layer_index(model, "flatten", "localization")]
    pooled = next(layer.name for layer in model.layers if layer.output is flatten.input)
    features = feature_extractor(model, [pooled])
    features.trainable = False
    return features


def in_batches(model, x, most=64):
    """`model`'s outputs on `x` (an array, or a list of arrays for several outputs), compiled,
    in batches of at most `most` rows, each padded to a power of two: a handful of input
    shapes whatever the number of windows (eager calls on a new batch size each image ran
    ~10x slower)."""
    outputs = []
    for i in range(0, len(x), most):
        chunk = x[i : i + most]
        padded = 1 << (len(chunk) - 1).bit_length()
        if padded > len(chunk):
            chunk = np.concatenate([chunk, np.zeros((padded - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out = model.predict_on_batch(chunk)
        out = list(out.values()) if isinstance(out, dict) else out  # a feature_extractor's {name: map}
        out = out if isinstance(out, (list, tuple)) else [out]
        outputs.append([keras.ops.convert_to_numpy(o)[: min(most, len(x) - i)] for o in out])
    joined = [np.concatenate(parts) for parts in zip(*outputs)]
    return joined if len(joined) > 1 else joined[0]


def box_regressor(feature_shape, classes=None, hidden=(4096, 1024)):
    """Pooled layer-5 map -> 4 box edges (or 4 per class), edges as fractions of the window."""
    inputs = keras.Input(feature_shape)
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Normalization(name="feature_norm")(x)
    for i, units in enumerate(hidden, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"reg_fc{i}")(x)
    outputs = keras.layers.Dense(4 * (classes or 1), name="reg_boxes")(x)
    return keras.Model(inputs, outputs, name="box_regressor")


def _windows(images, boxes, labels, size, scales, offsets, rng, clip=True):
    """Training windows of `size` at each scale, at random offsets that keep most of the box;
    targets: the box's part inside the window (clip), or the whole box in window coordinates."""
    out_x, out_b, out_l = [], [], []
    for image, box, label in zip(images, boxes, labels):
        for scale in scales:
            h, w = image.shape[:2]
            scaled = keras.ops.convert_to_numpy(keras.ops.image.resize(
                image[None], (max(size, round(h * scale)), max(size, round(w * scale)))))[0]
            ratio = (scaled.shape[1] / w, scaled.shape[0] / h)
            b = np.array([box[0] * ratio[0], box[1] * ratio[1], box[2] * ratio[0], box[3] * ratio[1]])
            for _ in range(offsets):
                top = rng.integers(0, scaled.shape[0] - size + 1)
                left = rng.integers(0, scaled.shape[1] - size + 1)
                shifted = b - [left, top, left, top]
                clipped = np.clip(shifted, 0, size)
                if iou(clipped, shifted) < 0.5:
                    continue  # the window holds too little of the object
                out_x.append(scaled[top : top + size, left : left + size])
                out_b.append((clipped if clip else shifted) / size)
                out_l.append(label)
    return np.stack(out_x).astype("float32"), np.stack(out_b).astype("float32"), np.array(out_l)


def train_regressor(model, images, boxes, labels=None, classes=None, hidden=(4096, 1024), scales=(1.0,),
                    offsets=1, epochs=30, batch_size=32, learning_rate=1e-3, seed=0, clip_targets=True):
    """Train a box regressor on `model`'s frozen layer-5 features; returns the Localizer.

    images: (H, W, 3) arrays, model-ready (mean-subtracted); boxes: their (x1, y1, x2,
    y2) boxes; labels and classes: for a class-specific regressor (else one box).
    Windows of the model's input size are taken at each of `scales`, `offsets` times.
    clip_targets: learn the box's part inside each window (localization), or the whole
    box, reaching past the window (detection: windows holding part of an object).
    """
    features = feature_model(model)
    size = model.inputs[0].shape[1]
    labels = np.zeros(len(images), int) if labels is None else np.asarray(labels)
    rng = np.random.default_rng(seed)
    windows, targets, window_labels = _windows(images, boxes, labels, size, scales, offsets, rng, clip_targets)
    # Frozen: computed once, 128 windows a call (2x the throughput of 32 on CPU).
    (feats,) = features.predict(windows, batch_size=128, verbose=0).values()
    keras.utils.set_random_seed(seed)  # the regressor's initial weights and its batches: a function of `seed`
    regressor = box_regressor(feats.shape[1:], classes, hidden)
    regressor.get_layer("feature_norm").adapt(feats.reshape(len(feats), -1))
    slots = classes or 1
    mask = np.zeros((len(feats), 4 * slots), "float32")
    for i, label in enumerate(window_labels if classes else np.zeros(len(feats), int)):
        mask[i, 4 * label : 4 * label + 4] = 1.0
    y = np.concatenate([np.tile(targets, slots), mask], axis=1)

    def masked_l2(y_true, y_pred):  # L2 on the true class's 4 edges only
        target, weight = y_true[:, : 4 * slots], y_true[:, 4 * slots :]
        return keras.ops.sum(weight * keras.ops.square(y_pred - target), axis=1) / 4.0

    regressor.compile(keras.optimizers.Adam(learning_rate), masked_l2, jit_compile=True)  # XLA: 2x faster steps on CPU
    with released_custom_gradients():
        regressor.fit(feats, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return Localizer(features, regressor, size, classes, classifier=model)


class Localizer:
    """Frozen features + box regressor for windows of `size` pixels."""

    def __init__(self, features, regressor, size, classes=None, classifier=None):
        self.features, self.regressor, self.size, self.classes = features, regressor, size, classes
        self.classifier = classifier  # scores each window's box (§4.3); None: all windows count alike
        # The features and the classifier's scores in one pass: they share the convolutions.
        self._scored = None if classifier is None else keras.Model(
            classifier.inputs[0], [features.outputs[0], classifier.outputs[0]], name="scored_features")

    def _boxes(self, features, labels=None):
        out = in_batches(self.regressor, features)
        out = out.reshape(len(out), -1, 4)
        picks = np.zeros(len(out), int) if labels is None or not self.classes else np.asarray(labels)
        return out[np.arange(len(out)), picks] * self.size

    def predict(self, windows, labels=None):
        """Boxes (N, 4) in window pixels; the given (or only) class's box."""
        return self._boxes(in_batches(self.features, np.asarray(windows, "float32")), labels)

    def localize(self, image, label=0, scales=(1.0,), stride=None, threshold=None):
        """Slide windows over `image` at `scales`, predict a box per window (in image
        pixels), each with the classifier's probability of `label` as confidence, merge
        greedily; returns the most confident merged box."""
        (box,) = self.localize_many([image], [label], scales, stride, threshold)
        if box is None:
            raise NoBoxPredicted("no window predicted a non-empty box; try other scales or a smaller stride.")
        return box

    def localize_many(self, images, labels, scales=(1.0,), stride=None, threshold=None, progress=None,
                      windows_per_call=512):
        """`localize` for each image (None where no window predicted a box). The windows of
        several images go through the network together, `windows_per_call` at most: one
        image's few windows a call ran ~10x slower. `progress`: a Progbar, advanced per image."""
        results, pending, crops = [], [], []
        for image, label in zip(images, labels):
            windows = self._windows(np.asarray(image, "float32"), scales, stride)
            pending.append((image.shape[:2], label, windows))
            crops += [crop for _, crop in windows]
            if len(crops) >= windows_per_call:
                results += self._merged(pending, crops, threshold, progress)
                pending, crops = [], []
        return results + (self._merged(pending, crops, threshold, progress) if pending else [])

    def _windows(self, image, scales, stride):
        """[((scale factors y, x), (top, left)), crop] of `image` at each of `scales`."""
        stride = stride or self.size // 4
        h, w = image.shape[:2]
        out = []
        for scale in scales:
            shape = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            scaled = keras.ops.convert_to_numpy(keras.ops.image.resize(image[None], shape))[0]
            for t in range(0, shape[0] - self.size + 1, stride):
                for l in range(0, shape[1] - self.size + 1, stride):
                    out.append((((shape[0] / h, shape[1] / w), (t, l)), scaled[t : t + self.size, l : l + self.size]))
        return out

    def _merged(self, pending, crops, threshold, progress):
        crops = np.stack(crops)
        if self._scored is None:
            features, probs = in_batches(self.features, crops), None
        else:
            features, probs = in_batches(self._scored, crops)
        window_labels = np.concatenate([np.full(len(windows), label) for _, label, windows in pending])
        predicted = self._boxes(features, window_labels)
        threshold = self.size if threshold is None else threshold
        results, first = [], 0
        for (h, w), label, windows in pending:
            boxes, confidences = [], []
            for k, (((sy, sx), (t, l)), _) in enumerate(windows, start=first):
                box = np.clip((predicted[k] + [l, t, l, t]) / [sx, sy, sx, sy], 0, [w, h, w, h])
                if box[2] > box[0] and box[3] > box[1]:  # a window far from the object may predict none
                    boxes.append(box)
                    confidences.append(1.0 if probs is None else float(probs[k, label]))
            first += len(windows)
            results.append(merge_boxes(boxes, confidences, threshold)[0][0] if boxes else None)
            if progress is not None:
                progress.add(1)
        return results


def _prepared(images, boxes, trained):
    """Images at the run's evaluation shorter side, mean colour removed (kzoo.preprocessing);
    boxes scaled with them."""
    p = trained.preprocessing
    out_images, out_boxes, ratios = [], [], []
    for image, box in zip(images, boxes):
        scaled = preprocessing.mean_free(preprocessing.resize_shorter(image, p.eval_resize), p, trained.mean)
        ratio = np.array([scaled.shape[1] / image.shape[1], scaled.shape[0] / image.shape[0]] * 2, "float32")
        out_images.append(scaled)
        out_boxes.append(np.asarray(box, "float32") * ratio)
        ratios.append(ratio)
    return out_images, np.stack(out_boxes), np.stack(ratios)


def localize_run(run_dir, source, epochs=30, hidden=(4096, 1024), class_specific=True, scales=(1.0, 1.2),
                 offsets=2, threshold=None, limit=None, seed=0):
    """Train a box regressor on the frozen features of a finished classification run and
    report the ILSVRC localization error on `source`'s boxed validation images.

    The classifier's top 5 classes come from the centre view; the box is the
    regressor's (for the true class when it is among them), merged over windows
    at `scales` of the training shorter side. Saves `localization/regressor.weights.h5`
    and `localization/metrics.json` in the run directory; returns the metrics.
    """
    trained = load(run_dir=run_dir)
    model = trained.model
    if trained.dataset != source.name:
        raise ValueError(f"{run_dir!r} was trained on {trained.dataset!r}, not on {source.name!r}; localize with "
                         f"the classifier's own dataset (its classes).")
    classes = source.classes if class_specific else None

    images, boxes, labels = boxed_examples(source, "train", limit)
    images, boxes, _ = _prepared(images, boxes, trained)
    print(f"Training the box regressor on {len(images)} images ({len(scales)} scales, {offsets} offsets each)...")
    localizer = train_regressor(model, images, boxes, labels, classes=classes, hidden=hidden, scales=scales,
                                offsets=offsets, epochs=epochs, seed=seed)

    val_images, val_boxes, val_labels = boxed_examples(source, "val", limit)
    prepared, _, ratios = _prepared(val_images, val_boxes, trained)
    errors, ious = [], []
    progress = progress_bar(len(prepared), unit_name="image")
    top5s = []
    for i in range(0, len(val_images), 64):  # the validated centre views, 64 images a call
        top5s += list(np.argsort(-in_batches(model, trained.preprocess(val_images[i : i + 64])), axis=1)[:, :5])
    boxes = localizer.localize_many(prepared, val_labels if classes else np.zeros(len(prepared), int),
                                    scales=scales, threshold=threshold, progress=progress)
    for box, ratio, true_box, label, top5 in zip(boxes, ratios, val_boxes, val_labels, top5s):
        box = np.zeros(4) if box is None else box / ratio  # no box: a localization error
        ious.append(float(iou(box, true_box)))
        errors.append(localization_error(top5, box, int(label), true_box))
    metrics = {"dataset": source.name, "images": len(errors), "localization_err": float(np.mean(errors)),
               "box_err": float(np.mean(np.array(ious) < 0.5)), "mean_iou": float(np.mean(ious)),
               "class_specific": class_specific, "hidden": list(hidden), "scales": list(scales),
               "offsets": offsets, "epochs": epochs}
    folder = os.path.join(run_dir, "localization")
    save_weights_atomic(localizer.regressor, os.path.join(folder, "regressor.weights.h5"))
    with atomic_write(os.path.join(folder, "metrics.json")) as f:
        json.dump(metrics, f, indent=2)
    return metrics
