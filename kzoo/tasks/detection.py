"""OverFeat detection (§4.6 of the paper; the seed's summary): like localization, plus a
background class and negative examples, applied densely over all positions and scales.

- The classifier (an OverFeat-style model: a non-overlapping max-pooling before
  `flatten`) has one output per class and a last one for the background. It trains on
  windows of its input size: windows holding most of one object (that object's class)
  and windows holding little of any (background), then on the hardest background
  windows it still scores as objects (bootstrapping: `hard_negatives` per round).
- The box regressor is the localization one (kzoo.tasks.localization), class-specific,
  on the classifier's frozen layer-5 features, trained on each object of the scenes.
- At test time both run densely with offset max-pooling (kzoo.evaluate.dense): every
  position of every scale is a window with class probabilities and a box per class.
  Windows whose class probability reaches `min_score` give that class's box, the
  boxes of a class are merged greedily (`merge_boxes`), and each merged box is scored
  by the sum of its windows' probabilities (§4.3).

Two departures from the localization merge, both measured on the generated scenes:
- The paper's match score as printed (centre distance plus intersection area) keeps
  overlapping boxes apart, so duplicates of one object would never merge: detection
  matches by overlap (1 - IoU, merging pairs with IoU above 1 - `threshold`);
  `match="paper"` gives the printed score.
- A merged box is the probability-weighted mean of the two it replaces (so of all its
  windows), not their midpoint, which favours the boxes merged last (`weighted=False`
  gives the midpoint). The box regressor also learns whole boxes, reaching past the
  window (`clip_targets=False`): a window holding part of an object predicts all of it.
"""

import json
import os

import keras
import numpy as np

from kzoo import preprocessing
from kzoo.evaluate.dense import last_pool
from kzoo.evaluate.fcn import apply_chain, classifier_on_windows, feature_chain
from kzoo.evaluate.metrics import detection_mean_average_precision
from kzoo.layers import InterleaveOffsets, OffsetMaxPooling2D
from kzoo.registry import create_model
from kzoo.tasks.localization import box_regressor, in_batches, merge_boxes, train_regressor
from kzoo.tasks.transfer import write_results
from kzoo.utils.files import atomic_write, staged_path
from kzoo.utils.graphs import released_custom_gradients
from kzoo.utils.values import as_pair
from kzoo.utils.progress import progress_bar
from kzoo.weights.record import save_weights_atomic

BACKGROUND = "background"
PAPER_MEAN_AP = 24.3  # OverFeat §4.6: ILSVRC13 detection, post-competition (200 classes)
POSITIVE_INSIDE = 0.7  # a window shows an object when it holds this much of the object's area
NEGATIVE_INSIDE = 0.2  # and is background when it holds at most this much of every object


def _inside(window, boxes):
    """The fraction of each box's area that lies inside `window` (x1, y1, x2, y2)."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    ix = np.clip(np.minimum(boxes[:, 2], window[2]) - np.maximum(boxes[:, 0], window[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], window[3]) - np.maximum(boxes[:, 1], window[1]), 0, None)
    return ix * iy / np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)


def window_label(window, objects, background):
    """The class a window shows: the object it holds most of (>= POSITIVE_INSIDE), the
    background if it holds <= NEGATIVE_INSIDE of every object, else None (ambiguous)."""
    if not objects:
        return background
    inside = _inside(window, [box for box, _, _ in objects])
    best = int(np.argmax(inside))
    if inside[best] >= POSITIVE_INSIDE:
        return None if objects[best][2] else objects[best][1]  # difficult objects teach nothing
    return background if inside.max() <= NEGATIVE_INSIDE else None


MAX_SIDE = 8192  # a scaled image's longest side: beyond, the windows of one image alone fill the memory


def _scaled(image, scale, size):
    h, w = image.shape[:2]
    shape = (max(size, round(h * scale)), max(size, round(w * scale)))
    if max(shape) > MAX_SIDE:
        raise ValueError(f"scale {scale:g} makes a {w}x{h} image {shape[1]}x{shape[0]} px, over {MAX_SIDE}; give "
                         f"smaller --scales.")
    return preprocessing.resize(image, *shape), (shape[1] / w, shape[0] / h)


def sample_windows(images, objects, size, scales, per_object=4, negatives=4, background=None, seed=0):
    """Training windows (N, size, size, 3) and labels: per scale, `per_object` random windows
    showing each object and `negatives` background windows per image."""
    rng = np.random.default_rng(seed)
    windows, labels = [], []
    for image, objs in zip(images, objects):
        for scale in scales:
            scaled, (sx, sy) = _scaled(image, scale, size)
            h, w = scaled.shape[:2]
            scaled_objs = [((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), label, difficult)
                           for b, label, difficult in objs]

            def take(top, left, want):
                label = window_label((left, top, left + size, top + size), scaled_objs, background)
                if label is not None and (want is None or label == want):
                    windows.append(scaled[top : top + size, left : left + size])
                    labels.append(label)
                    return True
                return False

            for box, label, difficult in scaled_objs:
                if difficult:
                    continue
                # windows around the object: its top-left anywhere that keeps it inside
                lo_t, hi_t = max(0, int(box[3]) - size), min(h - size, int(box[1]))
                lo_l, hi_l = max(0, int(box[2]) - size), min(w - size, int(box[0]))
                found = 0
                for _ in range(per_object * 5 if hi_t >= lo_t and hi_l >= lo_l else 0):
                    if found == per_object:
                        break
                    found += take(int(rng.integers(lo_t, hi_t + 1)), int(rng.integers(lo_l, hi_l + 1)), label)
            found = 0
            for _ in range(negatives * 10 if background is not None else 0):
                if found == negatives:
                    break
                found += take(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), background)
    return np.stack(windows).astype("float32"), np.asarray(labels)


def feature_stride(model):
    """Input pixels between neighbouring positions of the map before the last pooling: one
    step of the dense (offset-pooled, interleaved) map."""
    flatten, _ = last_pool(model)
    stride = 1
    for layer in model.layers[1 : flatten - 1]:
        if hasattr(layer, "strides"):
            stride *= as_pair(layer.strides)[0]
    return stride


def pads(model, upto):
    """Whether a layer of `model` before index `upto` pads its input (padding="same", or a
    padding layer). Then a window inside a larger image sees its neighbours where, alone,
    it saw zeros, and one pass over the whole image differs from the window run alone."""
    for layer in model.layers[1:upto]:
        padding = getattr(layer, "padding", None)
        if isinstance(layer, keras.layers.ZeroPadding2D) or padding == "same" or \
                (padding is not None and not isinstance(padding, str) and np.any(np.asarray(padding))):
            return True
    return False


class Detector:
    """A classifier with a background class (last) and a class-specific box regressor on its
    layer-5 features, applied densely. `mean`: the colour removed from images first.

    `shared`: one pass over the whole image with offset max-pooling (OverFeat §3.5), exact
    for nets whose layers before the last pooling do not pad; with padding (OverFeat's own
    conv3-5), every window is cropped and run alone, so that the regressor reads the
    features it was trained on (on the generated scenes at 80 px, one shared pass gave mean
    AP 0.0: the 1x1 pooled map's box information is in its border padding). Default: shared
    unless the net pads."""

    def __init__(self, classifier, regressor, mean, class_names, shared=None):
        self.classifier, self.regressor = classifier, regressor
        self.mean = np.asarray(mean, np.float32)
        self.class_names = list(class_names)
        self.size = classifier.inputs[0].shape[1]
        self.stride = feature_stride(classifier)
        flatten, pool = last_pool(classifier)
        self.shared = not pads(classifier, flatten - 1) if shared is None else bool(shared)
        self._chain = feature_chain(classifier, flatten - 1)
        self._pool_size = tuple(pool.pool_size)
        self._flatten = flatten
        self._passes = {}  # (height, width) -> fixed-shape dense model: offset pooling needs static sizes
        pooled = classifier.layers[flatten].input
        self._windows = keras.Model(classifier.inputs, [classifier.outputs[0], regressor(pooled)])

    def _dense(self, shape):
        if shape not in self._passes:
            inputs = keras.Input((*shape, 3))
            x = OffsetMaxPooling2D(self._pool_size)(apply_chain(self._chain, inputs))
            probs = classifier_on_windows(self.classifier, self._flatten)(x)
            boxes = classifier_on_windows(self.regressor, 1)(x)
            self._passes[shape] = keras.Model(inputs, [InterleaveOffsets(self._pool_size)(probs),
                                                       InterleaveOffsets(self._pool_size)(boxes)])
        return self._passes[shape]

    def maps(self, image):
        """(probabilities (rows, cols, classes + 1), boxes (rows, cols, classes, 4) in the
        image's pixels) of a mean-free float image, one window per position."""
        if self.shared:
            probs, boxes = self._dense(image.shape[:2]).predict_on_batch(image[None])
            probs, boxes = keras.ops.convert_to_numpy(probs)[0], keras.ops.convert_to_numpy(boxes)[0]
        else:  # every window alone, on the same grid
            rows, cols = ((n - self.size) // self.stride + 1 for n in image.shape[:2])
            crops = np.stack([image[r * self.stride : r * self.stride + self.size,
                                    c * self.stride : c * self.stride + self.size]
                              for r in range(rows) for c in range(cols)])
            probs, boxes = in_batches(self._windows, crops)
            probs, boxes = probs.reshape(rows, cols, -1), boxes.reshape(rows, cols, -1)
        rows, cols = probs.shape[:2]
        boxes = boxes.reshape(rows, cols, -1, 4) * self.size
        top, left = np.meshgrid(np.arange(rows) * self.stride, np.arange(cols) * self.stride, indexing="ij")
        return probs, boxes + np.stack([left, top, left, top], axis=-1)[:, :, None]

    def candidates(self, image, scales=(1.0,), min_score=0.5):
        """Per class, the boxes (image pixels) and probabilities of the windows of every scale
        whose probability of the class reaches `min_score`."""
        image = np.asarray(image, np.float32) - self.mean
        h, w = image.shape[:2]
        out = [([], []) for _ in self.class_names]
        for scale in scales:
            scaled, (sx, sy) = _scaled(image, scale, self.size)
            probs, boxes = self.maps(scaled)
            for c in range(len(self.class_names)):
                hit = probs[..., c] >= min_score
                chosen = boxes[..., min(c, boxes.shape[2] - 1), :][hit] / [sx, sy, sx, sy]
                chosen = np.clip(chosen, 0, [w, h, w, h])
                ok = (chosen[:, 2] > chosen[:, 0]) & (chosen[:, 3] > chosen[:, 1])
                out[c][0].extend(chosen[ok])
                out[c][1].extend(probs[..., c][hit][ok])
        return out

    def detect(self, image, scales=(1.0,), min_score=0.5, merge=True, match="overlap", threshold=0.7, weighted=True):
        """[(class, score, box)] of one uint8 image: each class's windows merged greedily
        (merge=False: every window's box as it is)."""
        return _found(self.candidates(image, scales, min_score), merge, match, threshold, weighted)


def _found(candidates, merge, match, threshold, weighted):
    """`Detector.detect`'s [(class, score, box)] from its `candidates`."""
    found = []
    for c, (boxes, scores) in enumerate(candidates):
        if not boxes:
            continue
        if merge:
            boxes, scores = merge_boxes(list(boxes), list(scores), threshold, match, weighted=weighted)
        found += [(c, float(s), tuple(float(v) for v in b)) for b, s in zip(boxes, scores)]
    return found


def mine_hard_negatives(detector, images, objects, scales, count):
    """The `count` background windows of the training images (mean-free, at `scales`) that
    the classifier scores most as an object: the paper's bootstrapping."""
    background = len(detector.class_names)
    pool = []  # (object probability, image, scale, top, left)
    for n, (image, objs) in enumerate(zip(images, objects)):
        for scale in scales:
            scaled, (sx, sy) = _scaled(image, scale, detector.size)
            probs, _ = detector.maps(scaled)
            objectness = 1.0 - probs[..., background]
            scaled_objs = [((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), label, d) for b, label, d in objs]
            for r, c in zip(*np.unravel_index(np.argsort(-objectness, axis=None)[: 4 * count], objectness.shape)):
                top, left = r * detector.stride, c * detector.stride
                window = (left, top, left + detector.size, top + detector.size)
                if top + detector.size <= scaled.shape[0] and left + detector.size <= scaled.shape[1] and \
                        window_label(window, scaled_objs, background) == background:
                    pool.append((float(objectness[r, c]), n, scale, top, left))
    pool.sort(key=lambda p: -p[0])
    windows = []
    for _, n, scale, top, left in pool[:count]:
        scaled, _ = _scaled(images[n], scale, detector.size)
        windows.append(scaled[top : top + detector.size, left : left + detector.size])
    return np.stack(windows).astype("float32") if windows else np.zeros((0, detector.size, detector.size, 3), "float32")


def _fit(model, x, y, epochs, batch_size, learning_rate, momentum, seed, verbose=0):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.SGD(learning_rate, momentum=momentum), "sparse_categorical_crossentropy")
    with released_custom_gradients():
        model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)


def train_detector(model, scenes, scales=(1.0,), epochs=10, rounds=1, hard_negatives=200, regressor_epochs=20,
                   per_object=4, negatives=4, batch_size=32, learning_rate=0.001, momentum=0.9, background=True,
                   class_specific=True, regressor_offsets=4, regressor_hidden=(4096, 1024), seed=0, log=None):
    """Train `model` (an OverFeat-style classifier with len(classes) + 1 outputs; with
    background=False, len(classes) outputs and no negative windows: the ablation) on
    windows of `scenes` (kzoo.data.scenes), bootstrap hard negatives for `rounds` more
    rounds, then the box regressor (class-specific, or one box for all classes). `log`: a
    function given each stage's message (e.g. print). Returns the Detector."""
    verbose = 2 if log else 0  # a line per epoch when the stages are told
    log = log or (lambda message: None)
    classes = len(scenes.class_names)
    outputs = model.outputs[0].shape[-1]
    if outputs != classes + int(background):
        raise ValueError(f"the detector's classifier needs {classes + int(background)} outputs ({classes} classes"
                         f"{' and the background' if background else ''}); '{model.name}' has {outputs}.")
    images = [scenes.read(i).astype("float32") for i in range(len(scenes.images))]
    mean = np.mean([image.reshape(-1, 3).mean(0) for image in images], axis=0)
    images = [image - mean for image in images]
    size = model.inputs[0].shape[1]
    x, y = sample_windows(images, scenes.objects, size, scales, per_object, negatives if background else 0,
                          background=classes if background else None, seed=seed)
    y = y.astype("int32")
    log(f"Training the classifier on {len(x)} windows ({int(np.sum(y < classes))} of objects) for {epochs} epochs...")
    _fit(model, x, y, epochs, batch_size, learning_rate, momentum, seed, verbose)
    boxed = [(image, box, label) for image, objs in zip(images, scenes.objects) for box, label, d in objs if not d]
    if not boxed:
        raise ValueError(f"{scenes.name!r} has no (non-difficult) object to train the box regressor on.")
    log(f"Training the box regressor on {len(boxed)} objects for {regressor_epochs} epochs...")
    localizer = train_regressor(model, [b[0] for b in boxed], np.array([b[1] for b in boxed]),
                                np.array([b[2] for b in boxed]), classes=classes if class_specific else None,
                                hidden=regressor_hidden, scales=scales,
                                offsets=regressor_offsets, epochs=regressor_epochs, seed=seed, clip_targets=False)
    detector = Detector(model, localizer.regressor, mean, scenes.class_names)
    for round_ in range(rounds if background else 0):
        hard = mine_hard_negatives(detector, images, scenes.objects, scales, hard_negatives)
        if not len(hard):
            break
        log(f"Bootstrapping, round {round_ + 1} of {rounds}: {len(hard)} hard negatives added...")
        x, y = np.concatenate([x, hard]), np.concatenate([y, np.full(len(hard), classes, "int32")])
        _fit(model, x, y, max(1, epochs // 2), batch_size, learning_rate / 10, momentum, seed + 1 + round_, verbose)
    return detector


def evaluate_detector(detector, scenes, scales=(1.0,), min_score=0.5, merge=True, match="overlap", threshold=0.7,
                      weighted=True, progress=True):
    """Detection mean AP (IoU >= 0.5) of `detector` on `scenes`: (per-class APs, mean, detections)."""
    return _evaluate(detector, scenes, scales, min_score, (merge,), match, threshold, weighted, progress)[0]


def _evaluate(detector, scenes, scales, min_score, merges, match, threshold, weighted, progress):
    """`evaluate_detector`'s result for each value of merge in `merges`, the network run once."""
    detections = [[] for _ in merges]
    bar = progress_bar(len(scenes.images), unit_name="image") if progress else None
    for i in range(len(scenes.images)):
        candidates = detector.candidates(scenes.read(i), scales, min_score)
        for found, merge in zip(detections, merges):
            found += [(i, c, score, box) for c, score, box in _found(candidates, merge, match, threshold, weighted)]
        if bar is not None:
            bar.add(1)
    truths = {i: objects for i, objects in enumerate(scenes.objects)}
    return [(*detection_mean_average_precision(found, truths, len(scenes.class_names)), found)
            for found in detections]


def new_classifier(model, size, classes, background=True, options=None, seed=0):
    """The registry's `model` (e.g. "overfeat_fast") on size x size windows, with an output per
    class and one for the background, its initial weights drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    return create_model(model, **(options or {}), input_shape=(size, size, 3), classes=classes + int(background))


def save_detector(detector, folder, model, model_options, settings, results=None):
    """The detector in `folder`: classifier.weights.h5, regressor.weights.h5 and detector.json
    (the registry model and options that rebuild the classifier, the classes, the mean colour,
    the regressor's shape and the detection `settings`), and with `results` ((metrics, table))
    results.json and results.md; `load_detector(folder)` reads it back. All files are written
    in a folder beside it that is renamed into place: a crash leaves no mix of two detectors.
    An existing `folder` is refused."""
    if os.path.exists(folder):
        raise FileExistsError(f"{folder!r} already exists; save the detector elsewhere.")
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    with staged_path(folder) as staging:
        save_weights_atomic(detector.classifier, os.path.join(staging, "classifier.weights.h5"))
        save_weights_atomic(detector.regressor, os.path.join(staging, "regressor.weights.h5"))
        hidden = [layer.units for layer in detector.regressor.layers if layer.name.startswith("reg_fc")]
        config = {"model": model, "options": model_options, "input_size": detector.size,
                  "class_names": detector.class_names,
                  "background": detector.classifier.outputs[0].shape[-1] > len(detector.class_names),
                  "mean": detector.mean.tolist(), "regressor_hidden": hidden,
                  "class_specific": detector.regressor.outputs[0].shape[-1] > 4, **settings}
        with atomic_write(os.path.join(staging, "detector.json")) as f:
            json.dump(config, f, indent=2)
        if results is not None:
            write_results(staging, *results)


def load_detector(folder):
    """(Detector, its settings) saved by `save_detector` (e.g. RUN/detection)."""
    path = os.path.join(folder, "detector.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} holds no detector.json; give the detection folder of a run trained "
                                f"with `python -m kzoo.recipes.overfeat --detect` (RUN/detection).")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    classes = len(config["class_names"])
    size = config["input_size"]
    classifier = new_classifier(config["model"], size, classes, config["background"], config["options"])
    classifier.load_weights(os.path.join(folder, "classifier.weights.h5"))
    features = classifier.get_layer("flatten").input.shape[1:]
    regressor = box_regressor(features, classes if config["class_specific"] else None, config["regressor_hidden"])
    regressor.load_weights(os.path.join(folder, "regressor.weights.h5"))
    return Detector(classifier, regressor, config["mean"], config["class_names"]), config


def results_table(metrics):
    """Per-class AP and the mean, beside the paper's ILSVRC13 number (a different task: say so)."""
    lines = [f"OverFeat detection on {metrics['dataset']} ({metrics['val_images']} validation images, "
             f"{metrics['val_objects']} objects): average precision at IoU >= 0.5, each box matched once", "",
             "| class | AP |", "|---|---|"]
    for name, ap in metrics["average_precision"].items():
        lines.append(f"| {name} | {'–' if ap is None else f'{ap:.1%}'} |")
    lines.append(f"| **mean** | **{metrics['mean_average_precision']:.1%}** |")
    lines += ["", f"Without the merge (every window's box a detection): {metrics['mean_ap_unmerged']:.1%}. "
              f"The paper: {PAPER_MEAN_AP}% mean AP on ILSVRC13 (200 classes, post-competition)."]
    return "\n".join(lines) + "\n"


def detection_metrics(detector, scenes, scales, min_score, threshold):
    """The metrics of `detector` on `scenes`: per-class AP (by name; None for a class without
    boxes), the mean, and the mean without the merge."""
    (aps, mean, detections), (_, unmerged, _) = _evaluate(detector, scenes, scales, min_score, (True, False),
                                                          "overlap", threshold, True, True)
    return {"dataset": scenes.name, "val_images": len(scenes.images),
            "val_objects": sum(not d for objects in scenes.objects for _, _, d in objects),
            "average_precision": {name: None if np.isnan(ap) else float(ap) for name, ap in
                                  zip(scenes.class_names, aps)},
            "mean_average_precision": float(mean), "mean_ap_unmerged": float(unmerged),
            "detections": len(detections), "paper_mean_average_precision": PAPER_MEAN_AP / 100}
