"""ZFNet §4.3 (arXiv Table 1), correspondence analysis: Delta against a numpy double loop
over the pairs, the cases whose answer is known (identical images and masks: 0; random
masks on structured images: more than the consistent part), the box mapping against the
preprocessed image, and `python -m kzoo.visualize correspondence` on the digits."""

import json

import numpy as np
import pytest

import keras

from kzoo.preprocessing import Preprocess, center_view, view_box
from kzoo.visualize import correspondence as corr
from kzoo.visualize.run import main


def double_loop_delta(original, occluded, tolerance):
    """The paper's sum written out: eps_i, its signs (|eps| <= tolerance * max|x_i| is 0),
    and H over every ordered pair i != j, one entry at a time."""
    n = len(original)
    signs = []
    for x, x_tilde in zip(original, occluded):
        eps = np.asarray(x, np.float64) - np.asarray(x_tilde, np.float64)
        limit = tolerance * np.abs(np.asarray(x, np.float64)).max()
        signs.append([0 if abs(e) <= limit else (1 if e > 0 else -1) for e in eps])
    total = 0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += sum(a != b for a, b in zip(signs[i], signs[j]))
    return total


def test_hamming_and_delta_equal_a_double_loop():
    rng = np.random.default_rng(0)
    s = rng.integers(-1, 2, size=(6, 50)).astype(np.int8)
    h = corr.hamming(s)
    for i in range(6):
        for j in range(6):
            assert h[i, j] == sum(int(a != b) for a, b in zip(s[i], s[j]))
    assert corr.delta(s) == sum(h[i, j] for i in range(6) for j in range(6) if i != j)
    x = rng.normal(size=(4, 30))
    x_tilde = x + rng.normal(size=(4, 30)) * (rng.uniform(size=(4, 30)) < 0.5)
    x_tilde[0, :3] = x[0, :3] + 1e-9  # round-off: no sign
    assert corr.delta(corr.signs(x, x_tilde)) == double_loop_delta(x, x_tilde, 1e-4)
    assert corr.signs(x, x_tilde)[0, :3].tolist() == [0, 0, 0]


def small_net(seed=0, size=16):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv5")(x)
    x = keras.layers.ReLU(name="relu5")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, name="fc7")(x)
    x = keras.layers.ReLU(name="relu7")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="fc8")(x))


def test_delta_equals_the_double_loop_on_a_network():
    model = small_net()
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    boxes = np.array([[2, 3, 7, 8], [5, 5, 10, 10], [0, 0, 4, 6], [9, 10, 16, 16]])
    result = corr.correspondence(model, images, {"eye": boxes}, layers=["relu5", "relu7"], draws=2)
    assert result["layers"] == ["relu5", "relu7"] and result["features"] == {"relu5": 512, "relu7": 32}
    occluded = images.copy()
    for image, (x1, y1, x2, y2) in zip(occluded, boxes):
        image[y1:y2, x1:x2] = 0.0
    row = result["rows"][0]
    assert row["mask"] == "eye" and row["kind"] == "part"
    for layer in ("relu5", "relu7"):
        features = keras.Model(model.inputs, keras.layers.Flatten()(model.get_layer(layer).output))
        expected = double_loop_delta(features.predict(images, verbose=0), features.predict(occluded, verbose=0), 1e-4)
        assert expected > 0
        assert row["delta"][layer] == expected
        np.testing.assert_allclose(row["fraction"][layer], expected / (4 * 3 * result["features"][layer]))
    (random_row,) = [r for r in result["rows"] if r["kind"] == "random"]
    assert random_row["mask"] == "random (eye's size)" and random_row["draws"] == 2
    for layer in ("relu5", "relu7"):
        features = keras.Model(model.inputs, keras.layers.Flatten()(model.get_layer(layer).output))
        rng = np.random.default_rng(0)  # the default seed: the same two draws of boxes
        totals = []
        for _ in range(2):
            drawn = corr.random_boxes(boxes, 16, 16, rng)
            assert (drawn[:, 2:] - drawn[:, :2] == boxes[:, 2:] - boxes[:, :2]).all()  # the part's sizes
            assert drawn.min() >= 0 and drawn[:, 2:].max() <= 16  # inside the view
            hidden = corr.occlude(images, drawn)
            totals.append(double_loop_delta(features.predict(images, verbose=0), features.predict(hidden, verbose=0),
                                            1e-4))
        np.testing.assert_allclose([random_row["delta"][layer], random_row["delta_std"][layer]],
                                   [np.mean(totals), np.std(totals)])


def test_identical_images_and_masks_give_zero_and_random_masks_do_not():
    model = small_net(seed=2)
    image = np.random.default_rng(3).normal(size=(16, 16, 3)).astype(np.float32)
    images = np.repeat(image[None], 5, axis=0)
    boxes = np.repeat([[4, 4, 9, 10]], 5, axis=0)
    result = corr.correspondence(model, images, {"part": boxes}, layers=["relu5", "relu7"], draws=3, seed=0)
    part, random = result["rows"]
    assert part["delta"] == {"relu5": 0, "relu7": 0}
    assert np.array(part["pairs"]["relu5"]).sum() == 0
    assert random["delta"]["relu5"] > 0 and random["delta"]["relu7"] > 0  # the same images, boxes elsewhere


def test_random_masks_on_structured_images_are_less_consistent_than_the_part():
    model = small_net(seed=4, size=24)
    rng = np.random.default_rng(5)
    template = np.zeros((24, 24, 3), np.float32)
    template[6:18, 6:18] = rng.uniform(1, 3, size=(12, 12, 3))  # one object, the same place in every image
    images = template + 0.1 * rng.normal(size=(6, 24, 24, 3)).astype(np.float32)
    boxes = np.repeat([[8, 8, 13, 13]], 6, axis=0)  # the same part of it
    result = corr.correspondence(model, images, {"part": boxes}, layers=["relu5", "relu7"], draws=10, seed=1)
    part, random = result["rows"]
    for layer in ("relu5", "relu7"):
        assert part["delta"][layer] < random["delta"][layer] - 2 * random["delta_std"][layer], layer
    table = corr.table_markdown(result)
    assert "| part | " + str(part["delta"]["relu5"]) + " | " in table
    assert "| random (part's size) | " in table


def test_boxes_follow_the_resize_and_the_centre_crops():
    p = Preprocess(resize=96, center=80, crop=64, mean="channel")
    raw = np.zeros((48, 60, 3), np.uint8)  # upsampled by 2 to 96x120
    box = (22, 10, 38, 26)
    raw[box[1] : box[3], box[0] : box[2]] = 255
    view = center_view(raw, p, np.zeros(3))
    rows, cols = np.nonzero(view[..., 0] > 127.5)
    mapped = view_box(box, 48, 60, p)  # x: 44 - 20 - 8 = 16 .. 48; y: 20 - 8 - 8 = 4 .. 36
    assert mapped == (16.0, 4.0, 48.0, 36.0)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == mapped
    assert corr.pixel_box(mapped, 64, 64).tolist() == [16, 4, 48, 36]
    assert corr.pixel_box((-5.2, 60.4, 3.5, 70), 64, 64).tolist() == [0, 60, 4, 64]  # rounded, clipped
    with pytest.raises(ValueError, match="leaves no pixel of the 64x64 view"):
        corr.pixel_box((70, 0, 80, 10), 64, 64)


def test_box_files_name_every_image_of_every_part(tmp_path):
    path = tmp_path / "parts.csv"
    path.write_text("image,x1,y1,x2,y2,part\n*,0,0,4,3,top\na,1,1,3,3,eye\nb.png,2,2,4,4,eye\n")
    rows = corr.read_parts(str(path))
    assert rows[0] == ("*", "top", (0.0, 0.0, 4.0, 3.0))
    p = Preprocess(resize=8, center=8, crop=8)
    keys = [{"a", "a.png"}, {"b", "b.png"}]
    parts = corr.part_boxes(rows, keys, [(8, 8), (8, 8)], p, 8)
    assert parts["top"].tolist() == [[0, 0, 4, 3]] * 2 and parts["eye"].tolist() == [[1, 1, 3, 3], [2, 2, 4, 4]]
    with pytest.raises(ValueError, match="part 'eye' has no box for image\\(s\\) c: give one per image"):
        corr.part_boxes(rows, keys + [{"c"}], [(8, 8)] * 3, p, 8)
    path.write_text("image,x,y\n")
    with pytest.raises(ValueError, match="needs the header image,x1,y1,x2,y2,part"):
        corr.read_parts(str(path))
    path.write_text("image,x1,y1,x2,y2\na,3,0,3,4\n")
    with pytest.raises(ValueError, match="empty box"):
        corr.read_parts(str(path))


def test_cli_writes_the_table_and_the_masks(tmp_path, capsys):
    boxes = tmp_path / "parts.csv"
    boxes.write_text("image,x1,y1,x2,y2,part\n*,2,0,6,3,top\n*,2,5,6,8,bottom\n")  # of the 8x8 digits
    out = tmp_path / "out"
    assert main(["correspondence", "--model", "resnet20", "--weights", "digits", "--boxes", str(boxes),
                 "--label", "3", "--limit", "3", "--draws", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["correspondence.json", "correspondence.md",
                                                     "correspondence.png"]
    printed = capsys.readouterr().out
    table = (out / "correspondence.md").read_text()
    assert "| top | " in table and "| random (bottom's size) | " in table and table.strip() in printed
    numbers = json.loads((out / "correspondence.json").read_text())
    assert numbers["class"] == "3" and numbers["images"] == 3 and numbers["layers"] == ["conv4_block3_out", "avg_pool"]
    top = numbers["rows"][0]
    assert top["boxes"] == [[8, 0, 24, 12]] * 3  # 8x8 digits, 4x larger in the 32px view
    pairs = np.array(top["pairs"]["avg_pool"])
    assert top["delta"]["avg_pool"] == pairs.sum() and (pairs == pairs.T).all() and not pairs.diagonal().any()


def test_cli_refuses_bad_input(tmp_path, capsys):
    base = ["correspondence", "--model", "resnet20", "--weights", "digits", "--out", str(tmp_path)]
    boxes = tmp_path / "b.csv"
    boxes.write_text("image,x1,y1,x2,y2,part\n*,20,20,30,30,far\n")
    for extra, message in (([], "correspondence needs --boxes FILE: a CSV with the header image,x1,y1,x2,y2,part"),
                           (["--boxes", str(tmp_path / "none.csv")], "box file"),
                           (["--boxes", str(boxes)], "leaves no pixel of the 32x32 view"),
                           (["--boxes", str(boxes), "--label", "12"], "has no val images of class 12")):
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["b.csv"]
