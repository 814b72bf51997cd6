"""ZFNet §4.2 (arXiv Fig. 5), feature invariance: the transforms against numpy slicing and
np.rot90, the distances on a net translation-invariant by construction against a numpy
convolution, and `python -m kzoo.visualize invariance` on the shipped digits weights."""

import json

import numpy as np
import pytest

import keras

from kzoo.visualize import correspondence, invariance
from kzoo.visualize.invariance import transform
from kzoo.visualize.run import main


def test_translation_moves_rows_and_fills_zero():
    images = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    down = transform(images, "translate", 2)
    np.testing.assert_array_equal(down[:, 2:], images[:, :-2])
    np.testing.assert_array_equal(down[:, :2], 0)
    up = transform(images, "translate", -3)
    np.testing.assert_array_equal(up[:, :-3], images[:, 3:])
    np.testing.assert_array_equal(up[:, -3:], 0)
    assert up.dtype == np.float32 and up.shape == images.shape
    half = transform(images[0], "translate", 0.5)  # one image, bilinear between two rows
    np.testing.assert_allclose(half[1:], (images[0, 1:] + images[0, :-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(half[0], images[0, 0] / 2, atol=1e-6)  # half of it from outside: 0


@pytest.mark.parametrize("side", [6, 5])
def test_rotation_is_counter_clockwise_about_the_centre(side):
    images = np.random.default_rng(1).normal(size=(2, side, side, 3)).astype(np.float32)
    for angle, k in ((90, 1), (180, 2), (270, 3), (360, 0), (-90, 3)):
        np.testing.assert_allclose(transform(images, "rotate", angle), np.rot90(images, k, axes=(1, 2)), atol=1e-5)
    corner = transform(np.ones((1, side, side, 1), np.float32), "rotate", 45)[0, :, :, 0]
    c = (side - 1) / 2  # corner (0, 0) reads row c - c * sqrt(2) of column c: outside, bilinear with 0
    np.testing.assert_allclose(corner[0, 0], max(0.0, 1 - (c * np.sqrt(2) - c)), atol=1e-6)
    assert corner[side // 2, side // 2] == 1


def test_scale_enlarges_about_the_centre():
    h, w = 9, 7
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ramp = (3.0 * y + x)[None, :, :, None].astype(np.float32)  # bilinear reproduces a linear image exactly
    np.testing.assert_array_equal(transform(ramp, "scale", 1.0), ramp)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    expected = 3.0 * (cy + (y - cy) / 1.6) + (cx + (x - cx) / 1.6)
    np.testing.assert_allclose(transform(ramp, "scale", 1.6)[0, :, :, 0], expected, atol=1e-4)
    small = transform(np.ones((1, h, w, 1), np.float32), "scale", 0.5)[0, :, :, 0]
    assert small[0, 0] == 0 and small[h // 2, w // 2] == 1  # shrunk: the border is filled with 0
    with pytest.raises(ValueError, match="must be > 0"):
        transform(ramp, "scale", 0)
    with pytest.raises(ValueError, match="unknown transform 'shear'; choose from translate, scale, rotate"):
        transform(ramp, "shear", 1)


def pooled_net(seed=0):
    """conv (no bias, zero padding) -> ReLU -> global mean -> softmax: its output is exactly
    invariant to shifts that keep the content away from the border; its conv map is not."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="fc")(x))


def numpy_conv_relu(image, kernel):
    """Independent reference: zero-padded 3x3 cross-correlation, then ReLU."""
    h, w, _ = image.shape
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy : dy + h, dx : dx + w] @ kernel[dy, dx]
    return np.maximum(out, 0)


def shifted(maps, s):
    out = np.zeros_like(maps)
    if s >= 0:
        out[s:] = maps[: len(maps) - s]
    else:
        out[:s] = maps[-s:]
    return out


def test_global_pooling_net_is_translation_invariant_where_its_conv_map_is_not():
    model = pooled_net()
    rng = np.random.default_rng(2)
    images = np.zeros((3, 16, 16, 2), np.float32)
    images[:, 5:11, 4:12] = rng.uniform(0.5, 2.0, size=(3, 6, 8, 2))  # an object on a zero background
    shifts = [-3, -1, 0, 2, 3]
    result = invariance.invariance(model, images, transforms=["translate"], values={"translate": shifts},
                                   layers=["relu1", "pool", "fc"], labels=[0, 1, 2])
    r = result["transforms"]["translate"]
    assert r["values"] == [float(s) for s in shifts] and result["label_source"] == "given"
    pooled = keras.ops.convert_to_numpy(keras.Model(model.inputs, model.get_layer("pool").output)(images))
    assert r["distance"]["pool"].max() < 1e-5 * np.abs(pooled).max()  # invariant: the same global mean
    assert r["distance"]["fc"].max() < 1e-6
    np.testing.assert_allclose(r["probability"], np.repeat(model.predict(images, verbose=0)[np.arange(3), [0, 1, 2]]
                                                           [:, None], len(shifts), axis=1), rtol=1e-5)
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
    maps = [numpy_conv_relu(image, kernel) for image in images]
    reference = np.array([[np.linalg.norm(m - shifted(m, s)) for s in shifts] for m in maps])
    assert reference[:, [0, 1, 3, 4]].min() > 1.0  # the conv map moves with the content
    np.testing.assert_allclose(r["distance"]["relu1"], reference, rtol=1e-4, atol=1e-4)


def test_probability_is_the_models_on_the_rotated_image_and_defaults_to_the_predicted_class():
    model = pooled_net(seed=3)
    images = np.random.default_rng(4).normal(size=(2, 16, 16, 2)).astype(np.float32)
    result = invariance.invariance(model, images, transforms=["rotate"], values={"rotate": [0, 90, 180]},
                                   layers=["relu1"])
    originals = model.predict(images, verbose=0)
    predicted = np.argmax(originals, axis=1)
    assert result["label_source"] == "predicted" and result["labels"] == predicted.tolist()
    for j, k in enumerate((0, 1, 2)):
        turned = model.predict(np.rot90(images, k, axes=(1, 2)), verbose=0)
        np.testing.assert_allclose(result["transforms"]["rotate"]["probability"][:, j], turned[[0, 1], predicted],
                                   rtol=1e-4, atol=1e-6)
    assert result["transforms"]["rotate"]["distance"]["relu1"][:, 0].max() == 0  # 0 degrees: the original


def test_default_layers_by_family(built):
    expected = {"zfnet": (["relu1", "relu7", "fc8"], ["relu5", "relu7"]),
                "overfeat_accurate": (["relu1", "relu8", "fc9"], ["relu6", "relu8"]),
                "resnet50": (["conv1_relu", "avg_pool", "fc"], ["conv5_block3_out", "avg_pool"]),
                "resnet20": (["conv1_relu", "avg_pool", "fc"], ["conv4_block3_out", "avg_pool"])}
    for name, (trio, pair) in expected.items():
        assert invariance.default_layers(built(name)) == trio, name
        assert correspondence.default_layers(built(name)) == pair, name


def test_default_sweeps_are_the_papers_scaled_to_the_input():
    assert invariance.default_values("translate", 224) == [float(v) for v in range(-60, 61, 10)]
    assert invariance.default_values("translate", 32) == [float(v) for v in range(-6, 7)]
    assert invariance.default_values("scale", 32) == [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8]
    assert invariance.default_values("rotate", 32)[:3] == [0.0, 15.0, 30.0]
    assert invariance.default_values("rotate", 32)[-1] == 360.0


def test_cli_writes_the_figure_and_the_numbers(tmp_path, capsys):
    import kzoo
    from kzoo.visualize.run import build_parser, load_inputs, load_model

    out = tmp_path / "figs"
    argv = ["invariance", "--model", "resnet20", "--weights", "digits", "--limit", "2", "--shifts", "-2", "0", "3",
            "--scales", "1", "1.4", "--angles", "0", "90", "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["invariance.json", "invariance.png"]
    assert (out / "invariance.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert f"wrote {out / 'invariance.png'}" in printed and f"wrote {out / 'invariance.json'}" in printed
    numbers = json.loads((out / "invariance.json").read_text())
    assert numbers["layers"] == ["conv1_relu", "avg_pool", "fc"] and numbers["label_source"] == "given"
    assert numbers["images"] == ["val 0", "val 1"]
    rotate = numbers["transforms"]["rotate"]
    assert rotate["values"] == [0.0, 90.0]
    # The reference: the shipped model on the same validation images, turned by np.rot90.
    trained, _ = load_model(build_parser().parse_args(argv))
    images, labels = load_inputs(build_parser().parse_args(argv), trained)
    assert numbers["labels"] == labels.tolist()
    for j, k in enumerate((0, 1)):
        p = trained.model.predict(np.rot90(images, k, axes=(1, 2)), verbose=0)[np.arange(2), labels]
        np.testing.assert_allclose(np.array(rotate["probability"])[:, j], p, rtol=1e-4, atol=1e-6)
    assert np.array(numbers["transforms"]["scale"]["distance"]["avg_pool"])[:, 0].max() == 0  # scale 1
    assert np.array(numbers["transforms"]["translate"]["distance"]["conv1_relu"])[:, [0, 2]].min() > 1
    assert kzoo.load("resnet20", weights="digits").model.name == numbers["model"]


def test_cli_refuses_bad_input(tmp_path, capsys):
    base = ["invariance", "--model", "resnet20", "--weights", "digits", "--limit", "1", "--out", str(tmp_path)]
    for extra, message in ((["--transform", "shear"], "argument --transform: invalid choice: 'shear'"),
                           (["--scales", "0"], "argument --scales: expected a number > 0, got '0'"),
                           (["--layers", "relu9"], "no layer 'relu9'; valid layers: "),
                           (["--transform", "rotate", "--shifts", "2"], "--shifts sweeps a transform that --transform "
                            "leaves out; add it to --transform (rotate), or drop --shifts.")):
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
