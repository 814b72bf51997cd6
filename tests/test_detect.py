"""OverFeat detection: the detection AP as the VOC devkit scores it (VOCevaldet)."""

import numpy as np
import pytest

from kzoo.evaluate.metrics import detection_average_precision, detection_mean_average_precision, iou

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


# --- scenes, windows, the dense detector

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.data.scenes import builtin_scenes, folder_scenes, generated_scenes  # noqa: E402
from kzoo.tasks.detection import (Detector, evaluate_detector, feature_stride, mine_hard_negatives,  # noqa: E402
                                  sample_windows, train_detector)
from kzoo.tasks.localization import box_regressor  # noqa: E402


def tiny_overfeat(classes, size=64, seed=0, padding="valid"):
    """An OverFeat-shaped net (valid convolutions, a non-overlapping last pooling before
    `flatten`), small enough to train in seconds; N(0, 0.01) weights as the papers'.
    padding="same": conv2 pads, as OverFeat's conv3-5 do."""
    keras.utils.set_random_seed(seed)
    init = lambda: keras.initializers.RandomNormal(stddev=0.01)  # noqa: E731
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 5, strides=2, activation="relu", kernel_initializer=init(), name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding=padding, kernel_initializer=init(), name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", kernel_initializer=init(), name="fc3")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", kernel_initializer=init(), name="fc4")(x)
    return keras.Model(inputs, outputs, name="tiny_overfeat")


def test_generated_scenes_hold_separate_objects_of_their_colour():
    images, objects = generated_scenes(60, size=128, seed=0, sides=(0.2, 0.35))
    assert sum(not o for o in objects) >= 3  # some scenes are empty
    for image, objs in zip(images, objects):
        for k, (box, label, difficult) in enumerate(objs):
            x1, y1, x2, y2 = map(int, box)
            patch = image[y1:y2, x1:x2].reshape(-1, 3).mean(0)
            assert np.argmax(patch) == label and patch[label] > patch.min() + 100  # the square's colour is its class
            assert not difficult
            for other, _, _ in objs[k + 1 :]:
                assert iou(box, other) == 0.0


def test_training_windows_show_their_object_or_nothing():
    # no coloured bars: the check below reads a window's class from its colours
    images, objects = generated_scenes(20, size=128, seed=1, sides=(0.2, 0.35), bars=0)
    x, y = sample_windows([im.astype("float32") for im in images], objects, 48, (1.0,), per_object=3, negatives=3,
                          background=3, seed=0)
    assert x.shape[1:] == (48, 48, 3) and set(np.unique(y)) == {0, 1, 2, 3}
    # independent check on the pixels: a class window holds that colour, a background window
    # holds at most a fifth of any square (so little of any colour)
    for window, label in zip(x, y):
        excess = window.reshape(-1, 3) - window.reshape(-1, 3).min(axis=1, keepdims=True)
        coloured = (excess > 75).mean(0)  # the fraction of pixels of each class colour
        if label == 3:
            assert coloured.max() <= 0.2 * (0.35 * 128) ** 2 / 48**2 + 0.02
        else:
            assert coloured[label] >= 0.7 * (0.2 * 128) ** 2 / 48**2 - 0.02


def test_dense_maps_equal_the_classifier_and_regressor_on_each_window():
    model = tiny_overfeat(4)
    assert feature_stride(model) == 4  # conv1 stride 2, pool1 2: the map before the last pooling
    regressor = box_regressor(model.get_layer("flatten").input.shape[1:], classes=3, hidden=(32, 16))
    regressor.get_layer("feature_norm").adapt(np.random.default_rng(0).normal(size=(10, 6 * 6 * 32)))
    detector = Detector(model, regressor, mean=(100, 100, 100), class_names=["r", "g", "b"])
    image = np.random.default_rng(1).normal(0, 50, (96, 112, 3)).astype("float32")
    probs, boxes = detector.maps(image)
    # (96 - 64) / 4 + 1 = 9 crops fit; the last pooling's floor drops a crop's last pre-pool
    # row (13 -> 6 pooled), so one more position fits: 10 x 14
    assert probs.shape == (10, 14, 4) and boxes.shape == (10, 14, 3, 4)
    features = keras.Model(model.inputs, model.get_layer("flatten").input)
    for r, c in ((0, 0), (4, 7), (8, 12)):
        window = image[None, 4 * r : 4 * r + 64, 4 * c : 4 * c + 64]
        np.testing.assert_allclose(probs[r, c], model.predict(window, verbose=0)[0], atol=1e-5)
        own = regressor.predict(features.predict(window, verbose=0), verbose=0)[0].reshape(3, 4) * 64
        np.testing.assert_allclose(boxes[r, c], own + [4 * c, 4 * r, 4 * c, 4 * r], rtol=1e-4, atol=1e-3)


def test_a_net_that_pads_runs_each_window_alone():
    """conv2 pads: in one pass over the image a window's border sees its neighbours, not the
    zeros it saw alone, so the detector crops every window (and says so: `shared`)."""
    model = tiny_overfeat(4, padding="same", seed=3)
    for layer in model.layers:  # weights large enough that the padding shows in the outputs
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(np.random.default_rng(4).normal(0, 0.2, layer.kernel.shape))
    pooled = model.get_layer("flatten").input.shape[1:]
    assert pooled == (7, 7, 32)  # 64 -> conv1 30 -> pool1 15 -> conv2 15 (same) -> pool2 7
    regressor = box_regressor(pooled, classes=3, hidden=(32, 16))
    detector = Detector(model, regressor, mean=(0, 0, 0), class_names=["r", "g", "b"])
    assert not detector.shared and Detector(model, regressor, (0, 0, 0), ["r", "g", "b"], shared=True).shared
    assert Detector(tiny_overfeat(4), box_regressor((6, 6, 32), 3, (8,)), (0, 0, 0),
                    ["r", "g", "b"]).shared  # valid convolutions: one shared pass is exact
    image = np.random.default_rng(1).normal(0, 50, (96, 112, 3)).astype("float32")
    probs, boxes = detector.maps(image)
    assert probs.shape == (9, 13, 4) and boxes.shape == (9, 13, 3, 4)  # (96 - 64) / 4 + 1, (112 - 64) / 4 + 1
    features = keras.Model(model.inputs, model.get_layer("flatten").input)
    for r, c in ((0, 0), (4, 7), (8, 12)):
        window = image[None, 4 * r : 4 * r + 64, 4 * c : 4 * c + 64]
        np.testing.assert_allclose(probs[r, c], model.predict(window, verbose=0)[0], atol=1e-5)
        own = regressor.predict(features.predict(window, verbose=0), verbose=0)[0].reshape(3, 4) * 64
        np.testing.assert_allclose(boxes[r, c], own + [4 * c, 4 * r, 4 * c, 4 * r], rtol=1e-3)  # boxes ~1e3 px
    # one shared pass would have given other numbers inside the image
    shared, _ = Detector(model, regressor, (0, 0, 0), ["r", "g", "b"], shared=True).maps(image)
    assert np.abs(shared[4, 7] - probs[4, 7]).max() > 1e-3


def _write_scene_folder(root, images, objects, with_xml):
    root.mkdir()
    names = ["red", "green", "blue"]
    rows = ["image,x1,y1,x2,y2,class"]
    (root / "ann").mkdir()
    for k, (image, objs) in enumerate(zip(images, objects)):
        tf.io.write_file(str(root / f"scene_{k:03d}.png"), tf.io.encode_png(image))
        rows += [f"scene_{k:03d}.png,{b[0]},{b[1]},{b[2]},{b[3]},{names[label]}" for b, label, _ in objs]
        body = "".join(f"<object><name>{names[label]}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                       f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                       for b, label, _ in objs)
        (root / "ann" / f"scene_{k:03d}.xml").write_text(
            f"<annotation><filename>scene_{k:03d}.png</filename>{body}</annotation>")
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root / ("ann" if with_xml else "boxes.csv")


@pytest.mark.parametrize("with_xml", [False, True], ids=["csv", "xml"])
def test_a_folder_and_its_boxes_file_give_the_scenes(tmp_path, with_xml):
    images, objects = generated_scenes(10, size=64, seed=2, sides=(0.2, 0.3))
    boxes = _write_scene_folder(tmp_path / "scenes", images, objects, with_xml)
    split = folder_scenes(str(tmp_path / "scenes"), str(boxes), val_fraction=0.2, seed=0)
    assert len(split["val"].images) == 2 and len(split["train"].images) == 8
    present = sorted({label for objs in objects for _, label, _ in objs})
    names = [["red", "green", "blue"][label] for label in present]
    assert split["train"].class_names == sorted(names)
    for part in split.values():
        for path, objs in zip(part.images, part.objects):
            k = int(path[-7:-4])
            assert np.array_equal(part.read(part.images.index(path)), images[k])
            expected = sorted((b, names.index(["red", "green", "blue"][label]) if False else
                               sorted(names).index(["red", "green", "blue"][label])) for b, label, _ in objects[k])
            assert sorted((b, label) for b, label, _ in objs) == expected


def test_bad_scene_folders_name_the_problem(tmp_path):
    images, objects = generated_scenes(4, size=64, seed=3, empty=0.0)
    boxes = _write_scene_folder(tmp_path / "scenes", images, objects, with_xml=False)
    text = boxes.read_text()
    boxes.write_text(text + "elsewhere.jpg,1,1,5,5,red\n")
    with pytest.raises(ValueError, match="names 1 image.* not under .*'elsewhere'"):
        folder_scenes(str(tmp_path / "scenes"), str(boxes))
    boxes.write_text(text + "scene_000.png,5,5,5,9,red\n")
    with pytest.raises(ValueError, match="empty box"):
        folder_scenes(str(tmp_path / "scenes"), str(boxes))
    boxes.write_text(text.replace("image,x1,y1,x2,y2,class", "image,x1,y1,x2,y2"))
    with pytest.raises(ValueError, match="needs the header image,x1,y1,x2,y2,class"):
        folder_scenes(str(tmp_path / "scenes"), str(boxes))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_scenes(str(tmp_path / "scenes"), str(tmp_path / "none.csv"))


@pytest.mark.large
def test_a_trained_detector_finds_the_objects_and_the_merge_and_the_background_class_are_what_rank_them():
    """Trained on generated scenes (3 classes; grey squares and coloured bars as clutter;
    empty scenes): mean AP at IoU 0.5 far above the same detector without the merge (every
    window's box a detection); trained without the background class, it calls clutter and
    noise objects (its mean AP: see docs/evaluation.md, it does not always fall)."""
    data = builtin_scenes(train_size=80, val_size=30, size=192, seed=0)
    settings = dict(epochs=15, negatives=8, learning_rate=0.001, seed=0)
    detector = train_detector(tiny_overfeat(4), data["train"], regressor_epochs=30, **settings)
    hard = mine_hard_negatives(detector, [data["train"].read(i) - detector.mean for i in range(10)],
                               data["train"].objects[:10], (1.0,), 20)
    assert hard.shape == (20, 64, 64, 3)
    aps, merged, found = evaluate_detector(detector, data["val"], min_score=0.5, threshold=0.7, progress=False)
    _, unmerged, raw = evaluate_detector(detector, data["val"], min_score=0.5, merge=False, progress=False)
    # measured 0.84 and 0.09
    assert merged > 0.7 and unmerged < 0.3, (aps, merged, unmerged)
    assert len(raw) > 10 * sum(len(o) for o in data["val"].objects)  # many windows per object before the merge
    ablation = train_detector(tiny_overfeat(3), data["train"], background=False, regressor_epochs=5, **settings)
    _, _, false_alarms = evaluate_detector(ablation, data["val"], min_score=0.5, threshold=0.7, progress=False)
    assert len(false_alarms) > 5 * len(found)  # measured 4,500 against 160


def test_the_detect_recipe_on_builtin_scenes_saves_a_detector_that_reloads(tmp_path, capsys):
    import json

    from kzoo.tasks.detection import load_detector
    from kzoo.recipes import overfeat

    run = tmp_path / "run"
    # --min-score 0: every window is a candidate, so an untrained detector still finds boxes to compare
    assert overfeat.main(["--detect", "--smoke", "--min-score", "0", "--run-dir", str(run)]) == 0
    folder = run / "detection"
    metrics = json.loads((folder / "results.json").read_text())
    assert metrics["dataset"] == "scenes" and metrics["val_images"] == 4 and metrics["train_images"] == 8
    assert list(metrics["average_precision"]) == ["red", "green", "blue"] and metrics["background"]
    assert metrics["merge_threshold"] == 0.7 and metrics["paper_mean_average_precision"] == 0.243
    assert "| **mean** |" in (folder / "results.md").read_text() and "Mean AP" in capsys.readouterr().out
    detector, config = load_detector(str(folder))
    assert detector.size == 80 and detector.classifier.outputs[0].shape[-1] == 4 and config["min_score"] == 0
    # the reloaded detector finds exactly what the run scored: same scenes (seed 0), same settings
    val = builtin_scenes(8, 4, size=240, seed=0)["val"]
    aps, mean, found = evaluate_detector(detector, val, min_score=0.0, threshold=0.7, progress=False)
    assert len(found) == metrics["detections"] > 0 and mean == pytest.approx(metrics["mean_average_precision"])
    assert sorted(p.name for p in run.iterdir()) == ["detection"]  # no staging folder left
    # a second run into the same directory is refused: the detector there is kept as it is
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        overfeat.main(["--detect", "--smoke", "--seed", "1", "--run-dir", str(run)])
    assert exit_.value.code == 2 and "already holds a detector" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_scene_splits_that_cannot_train_or_score_a_detector_are_refused():
    from kzoo.data.scenes import Scenes, check_splits

    box = (1.0, 1.0, 5.0, 5.0)
    split = lambda objects: Scenes("s", [None] * len(objects), objects, ["a", "b"])  # noqa: E731
    check_splits({"train": split([[(box, 0, False)], [(box, 1, False)]]), "val": split([[(box, 1, False)]])}, "--seed")
    with pytest.raises(ValueError, match="the val scenes hold no .non-difficult. object.*another --seed"):
        check_splits({"train": split([[(box, 0, False)]]), "val": split([[(box, 0, True)], []])}, "--seed")
    with pytest.raises(ValueError, match="the train scenes hold no"):
        check_splits({"train": split([[]]), "val": split([[(box, 0, False)]])}, "--seed")
    with pytest.raises(ValueError, match="class 'b' has objects in the validation scenes only"):
        check_splits({"train": split([[(box, 0, False)]]), "val": split([[(box, 1, False)]])}, "--seed")


def test_the_detect_recipe_on_a_folder_with_boxes(tmp_path, capsys):
    import json

    from kzoo.recipes import overfeat

    images, objects = generated_scenes(15, size=144, seed=4, sides=(0.25, 0.35))
    boxes = _write_scene_folder(tmp_path / "photos", images, objects, with_xml=False)
    run = tmp_path / "run"
    args = ["--detect", "--smoke", "--data-dir", str(tmp_path / "photos"), "--boxes", str(boxes),
            "--input-size", "71", "--regressor", "single", "--run-dir", str(run)]
    assert overfeat.main(args) == 0
    metrics = json.loads((run / "detection" / "results.json").read_text())
    config = json.loads((run / "detection" / "detector.json").read_text())
    present = sorted({["red", "green", "blue"][label] for objs in objects for _, label, _ in objs})
    assert metrics["dataset"] == "photos" and metrics["val_images"] == 3 and metrics["train_images"] == 12
    assert list(metrics["average_precision"]) == present == config["class_names"]
    assert config["input_size"] == 71 and not config["class_specific"]
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a folder needs its boxes, said before anything is written
        overfeat.main(["--detect", "--data-dir", str(tmp_path / "photos"), "--run-dir", str(tmp_path / "none")])
    assert "--data-dir needs --boxes" in capsys.readouterr().err and not (tmp_path / "none").exists()
