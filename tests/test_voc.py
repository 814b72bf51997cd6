"""PASCAL VOC 2012 (ZFNet §5.2): average precision, the devkit and tfds layouts, the recipe."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import kzoo
from kzoo.data.voc import VOC_CLASSES, load_voc
from kzoo.evaluate import average_precision, mean_average_precision
from kzoo.tasks.voc import spread_targets

# classes drawn in the generated scenes, and their colours
DRAWN = {"aeroplane": (220, 40, 40), "bicycle": (40, 220, 40), "bird": (40, 40, 220), "boat": (15, 15, 15)}


def devkit_ap(gt, confidence):
    """The devkit's VOCevalcls + VOCap, transliterated: gt 1 / 0 (difficult) / -1."""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])  # MATLAB's sort: stable
    tp = np.cumsum([gt[i] > 0 for i in order])
    fp = np.cumsum([gt[i] < 0 for i in order])
    rec = tp / sum(g > 0 for g in gt)
    prec = tp / np.maximum(tp + fp, 1e-300)
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def test_average_precision_of_a_hand_computed_ranking():
    # ranked: + - + + -; precisions 1, 1/2, 2/3, 3/4, 3/5; monotone: 1, 3/4, 3/4, 3/4
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert average_precision([1, 0, 1, 1, 0], scores) == pytest.approx((1 + 0.75 + 0.75) / 3)
    # not the uninterpolated mean of precisions (scikit-learn's), nor VOC2007's 11 points
    assert average_precision([1, 0, 1, 1, 0], scores) != pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert average_precision([0, 1], [0.9, 0.1]) == pytest.approx(0.5)
    assert average_precision([1, 1, 0], [0.1, 0.2, 0.3]) == pytest.approx(2 / 3)
    # a difficult image is neither a hit nor a false alarm
    assert average_precision([0, 1, 0], [0.9, 0.8, 0.1], difficult=[True, False, False]) == 1.0
    assert average_precision([0, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0, 0], [0.3, 0.4]))


def test_average_precision_equals_the_devkit_formulation_on_random_rankings():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(2, 40))
        gt = rng.choice([1, -1, 0], n, p=[0.3, 0.6, 0.1])
        gt[0] = 1
        scores = rng.integers(0, 6, n) / 5 if trial % 3 == 0 else rng.random(n)  # ties too
        ours = average_precision(gt == 1, scores, difficult=gt == 0)
        assert ours == pytest.approx(devkit_ap(gt.tolist(), scores.tolist()), abs=1e-12)


def test_mean_average_precision_per_class_and_errors():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (30, 4))
    labels[0] = 1
    labels[:, 3] = 0  # a class without positives: NaN, left out of the mean
    scores = rng.random((30, 4))
    aps, mean = mean_average_precision(labels, scores)
    expected = [devkit_ap(np.where(labels[:, c] == 1, 1, -1).tolist(), scores[:, c].tolist()) for c in range(3)]
    assert aps[:3] == pytest.approx(expected) and np.isnan(aps[3])
    assert mean == pytest.approx(np.mean(expected))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        average_precision([1, -1], [0.2, 0.1])
    with pytest.raises(ValueError, match="one shape"):
        mean_average_precision(labels, scores[:, :3])
    with pytest.raises(ValueError, match="finite"):
        average_precision([1, 0], [np.nan, 0.1])
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(np.zeros((3, 2)), np.ones((3, 2)))


def test_softmax_targets_are_spread_over_the_classes_present():
    labels = np.array([[1, -1, 1, 0], [-1, 1, -1, -1], [0, -1, -1, -1]])
    rows, classes, weights = spread_targets(labels)
    assert rows.tolist() == [0, 0, 1] and classes.tolist() == [0, 2, 1]  # difficult-only: no target
    assert weights.tolist() == [0.5, 0.5, 1.0]


def _xml(objects, width, height):
    body = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object>" for name, (x1, y1, x2, y2), difficult in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{body}</annotation>")


def write_devkit(root, counts=(("train", 80), ("val", 60)), seed=0):
    """A VOCdevkit/VOC2012 folder of generated scenes: 1-2 coloured squares of the DRAWN
    classes on noise, some marked difficult. Returns {split: (ids, (N, 20) devkit labels)}."""
    rng = np.random.default_rng(seed)
    base = pathlib.Path(root) / "VOCdevkit" / "VOC2012"
    for part in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / part).mkdir(parents=True, exist_ok=True)
    truth, number = {}, 0
    for split, count in counts:
        ids, labels = [], []
        for _ in range(count):
            number += 1
            image_id = f"2008_{number:06d}"
            h, w = 48, 48
            image = rng.normal(110, 25, (h, w, 3))
            objects, row = [], np.full(20, -1)
            for name in rng.choice(list(DRAWN), int(rng.integers(1, 3)), replace=False):
                side = int(rng.integers(16, 28))
                y, x = rng.integers(0, h - side), rng.integers(0, w - side)
                image[y : y + side, x : x + side] = DRAWN[name]
                difficult = rng.random() < 0.1
                objects.append((name, (x + 1, y + 1, x + side, y + side), difficult))
                c = VOC_CLASSES.index(name)
                row[c] = max(row[c], 0 if difficult else 1)
            jpeg = tf.io.encode_jpeg(np.clip(image, 0, 255).astype("uint8"), quality=95)
            tf.io.write_file(str(base / "JPEGImages" / f"{image_id}.jpg"), jpeg)
            (base / "Annotations" / f"{image_id}.xml").write_text(_xml(objects, w, h))
            ids.append(image_id)
            labels.append(row)
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        truth[split] = (ids, np.array(labels))
    return truth


@pytest.fixture(scope="module")
def devkit(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    return root, write_devkit(root)


def test_devkit_folder_gives_the_devkit_labels(devkit):
    root, truth = devkit
    for where in (root, root / "VOCdevkit", root / "VOCdevkit" / "VOC2012"):
        data = load_voc(str(where))
        for split in ("train", "val"):
            ids, labels = truth[split]
            assert data[split].labels.tolist() == labels.tolist()
            assert [pathlib.Path(f).stem for f in data[split].images] == ids
            assert data[split].class_names == list(VOC_CLASSES)
    assert data["val"].read(0).shape == (48, 48, 3)
    assert (truth["train"][1] == 0).any()  # some difficult-only labels were generated


def test_bad_devkit_folders_name_the_file(tmp_path):
    truth = write_devkit(tmp_path, counts=(("train", 3), ("val", 3)))
    base = tmp_path / "VOCdevkit" / "VOC2012"
    (base / "Annotations" / f"{truth['val'][0][1]}.xml").unlink()
    with pytest.raises(FileNotFoundError, match=f"{truth['val'][0][1]}.*annotation .*xml is missing"):
        load_voc(str(tmp_path))
    (base / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val.txt is missing"):
        load_voc(str(tmp_path))
    (base / "ImageSets" / "Main" / "val.txt").write_text(truth["train"][0][0] + "\n")
    xml = base / "Annotations" / f"{truth['train'][0][0]}.xml"
    xml.write_text(_xml([("zebra", (1, 1, 5, 5), False)], 64, 48))
    with pytest.raises(ValueError, match="class 'zebra' is not one of VOC's 20"):
        load_voc(str(tmp_path))
    xml.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="not a readable XML annotation"):
        load_voc(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither a VOC devkit folder .*Nothing is downloaded"):
        load_voc(str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_voc(str(tmp_path / "nowhere"))


def test_a_prepared_tfds_voc_is_read_in_image_order(tmp_path):
    """tfds' own voc/2012 builder, prepared from a generated devkit instead of the download."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.object_detection import voc

    truth = write_devkit(tmp_path / "src", counts=(("train", 6), ("val", 5)))

    class LocalVoc(voc.Voc, skip_registration=True):
        name = "voc"

        def _split_generators(self, dl_manager):
            return [tfds.core.SplitGenerator(name=split, gen_kwargs=dict(data_path=str(tmp_path / "src"),
                                                                         set_name=set_name))
                    for split, set_name in ((tfds.Split.TRAIN, "train"), (tfds.Split.VALIDATION, "val"))]

    LocalVoc(config="2012", data_dir=str(tmp_path / "tfds")).download_and_prepare()
    data = load_voc(str(tmp_path / "tfds"))
    devkit = load_voc(str(tmp_path / "src"))
    for split in ("train", "val"):
        assert data[split].labels.tolist() == truth[split][1].tolist()
        assert len(data[split].images) == len(truth[split][0])
    # the same pixels as the devkit's files
    assert np.array_equal(data["val"].read(2), devkit["val"].read(2))


def test_recipe_reports_each_class_ap_as_the_devkit_computes_it(devkit, tmp_path, capsys):
    """The recipe's APs equal the devkit's formula applied to the generator's labels and the
    scores of the saved transfer model, run here on the decoded files; they beat chance."""
    from kzoo.tasks.transfer import transfer_model
    from kzoo.recipes.voc2012 import main

    root, truth = devkit
    keras.utils.set_random_seed(0)
    kzoo.resnet20(classes=10).save_weights(str(tmp_path / "src.weights.h5"))
    jpegs = {split: [tf.io.decode_jpeg(tf.io.read_file(str(root / "VOCdevkit/VOC2012/JPEGImages" / f"{i}.jpg")),
                                       dct_method="INTEGER_ACCURATE").numpy()  # libjpeg's exact IDCT
                     for i in truth[split][0]] for split in ("train", "val")}
    train_mean = np.mean([image.reshape(-1, 3).mean(0) for image in jpegs["train"]], axis=0)  # every image
    source = kzoo.load("resnet20", weights=str(tmp_path / "src.weights.h5"), classes=10, mean=train_mean)
    features = source.preprocess(jpegs["val"])
    labels = truth["val"][1]
    for loss, activation in (("softmax", "softmax"), ("logistic", "sigmoid")):
        out = tmp_path / loss
        assert main(["--model", "resnet20", "--model-classes", "10", "--weights", str(tmp_path / "src.weights.h5"),
                     "--data-dir", str(root), "--loss", loss, "--out", str(out)]) == 0
        result = json.loads((out / "results.json").read_text())
        assert result["val_images"] == 60 and result["layer"] == "avg_pool" and result["loss"] == loss
        assert (out / "results.md").read_text().count("\n| ") == 22  # header, 20 classes, the mean
        head = keras.Sequential([keras.Input((64,)), keras.layers.Dense(20, activation=activation, name=activation)])
        model = transfer_model(source.model, "avg_pool", head)
        model.load_weights(str(out / f"voc2012-{loss}.weights.h5"))
        scores = model.predict(features, verbose=0)
        aps = result["average_precision"]
        for name in VOC_CLASSES:
            c = VOC_CLASSES.index(name)
            if name in DRAWN:
                assert aps[name] == pytest.approx(devkit_ap(labels[:, c].tolist(), scores[:, c].tolist()), abs=1e-6)
            else:
                assert aps[name] is None  # no positives: no AP, and out of the mean
        assert result["mean_average_precision"] == pytest.approx(np.mean([aps[name] for name in DRAWN]))
        # measured 0.91 (softmax) and 0.93 (logistic); chance is each class's share of the images, 0.3-0.4
        assert result["mean_average_precision"] > 0.8, (loss, aps)
    printed = capsys.readouterr().out
    assert "voc2012 train: 80 images." in printed and "paper: 79.0%" in printed


def test_recipe_refuses_bad_flags_before_reading_data(tmp_path, capsys):
    from kzoo.recipes.voc2012 import main

    cases = [
        (["--data-dir", str(tmp_path)], "give either --model NAME --weights PATH or --run-dir RUN"),
        (["--model", "zfnet", "--data-dir", str(tmp_path)], "--weights"),
        (["--run-dir", str(tmp_path), "--weights", "w.h5"], "--weights goes with --model"),
        (["--run-dir", str(tmp_path / "norun"), "--data-dir", str(tmp_path)], "is not a kzoo run directory"),
        (["--model", "zfnet", "--weights", "none", "--data-dir", str(tmp_path / "nowhere")], "is not a folder"),
        (["--model", "zfnet", "--weights", "none", "--data-dir", str(tmp_path)], "neither a VOC devkit folder"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err, argv
    with pytest.raises(SystemExit):
        main(["--model", "zfnet", "--weights", "none", "--loss", "hinge"])
    assert "invalid choice: 'hinge'" in capsys.readouterr().err
