"""Occlusion sensitivity on a tiny model whose class-1 evidence lives in one known region."""

import keras
import numpy as np
import pytest

from kzoo.visualize.common import to_display
from kzoo.visualize.occlusion import occlusion_figure, occlusion_maps

# 1x1 convolution (in -> out channels): map 0 = red, map 1 = 1.5 * green, map 2 = -(sum) (0 after ReLU).
KERNEL = np.array([[1, 0, -1], [0, 1.5, -1], [0, 0, -1]], np.float32)
REGION = slice(8, 16)  # class 1 sees only rows 8..15, cols 8..15


def tiny_model(softmax=True):
    """32x32x3 -> conv1 (1x1) -> relu1 -> crop to REGION -> mean -> dense: class-1 logit =
    2 * mean green-map in REGION, class-0 logit = 8 (a fixed bias)."""
    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(3, 1, name="conv1")
    x = keras.layers.ReLU(name="relu1")(conv(inputs))
    x = keras.layers.Cropping2D(((8, 16), (8, 16)))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax" if softmax else None, name="dense")
    model = keras.Model(inputs, dense(x))
    conv.set_weights([KERNEL.reshape(1, 1, 3, 3), np.zeros(3, np.float32)])
    dense.set_weights([np.array([[0, 0], [0, 2], [0, 0]], np.float32), np.array([8, 0], np.float32)])
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def image():
    image = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    image[REGION, REGION, 1] = 3.0  # green map = 4.5 there: class-1 logit 9 vs 8
    return image


def overlaps(positions, size):
    y, x = positions[..., 0], positions[..., 1]
    return (y < REGION.stop) & (y + size > REGION.start) & (x < REGION.stop) & (x + size > REGION.start)


def test_probability_drops_exactly_where_the_square_hides_the_region(model, image):
    maps = occlusion_maps(model, image, label=1, size=8, stride=4)
    assert maps["positions"].shape == (7, 7, 2) and maps["probability"].shape == (7, 7)
    assert maps["positions"][:, 0, 0].tolist() == [0, 4, 8, 12, 16, 20, 24]
    p0 = maps["unoccluded_probability"]
    assert p0 == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-5)  # logits 9 vs 8
    hit = overlaps(maps["positions"], 8)
    assert hit.sum() == 9  # y, x in {4, 8, 12}
    np.testing.assert_allclose(maps["probability"][~hit], p0, atol=1e-5)
    # Even a corner overlap (1/4 of the region) takes the class-1 logit from 9 to 6.75.
    assert maps["probability"][hit].max() < p0 - 0.4
    assert maps["probability"][2, 2] == pytest.approx(1 / (1 + np.exp(8.0)), abs=1e-5)  # (8, 8): region all grey
    np.testing.assert_array_equal(maps["label"], np.where(hit, 0, 1))


def test_activation_map_matches_numpy_and_uses_the_strongest_map(model, image):
    maps = occlusion_maps(model, image, label=1, layer="relu1", size=6, stride=5)

    def totals(x):
        return np.maximum(x @ KERNEL, 0).sum(axis=(0, 1))

    assert maps["feature_map"] == int(np.argmax(totals(image))) == 1
    expected = np.empty(maps["positions"].shape[:2])
    for (i, j), (y, x) in zip(np.ndindex(*expected.shape), maps["positions"].reshape(-1, 2)):
        occluded = image.copy()
        occluded[y : y + 6, x : x + 6] = 0.0
        expected[i, j] = totals(occluded)[1]
    np.testing.assert_allclose(maps["activation"], expected, rtol=0, atol=1e-4)
    assert expected.max() - expected.min() > 10  # the map actually varies


def test_defaults_reach_the_border(model, image):
    maps = occlusion_maps(model, image, label=1)  # default layer: relu1, the last ReLU
    assert (maps["size"], maps["stride"]) == (5, 2)  # 32 // 6, size // 2
    assert maps["positions"][:, 0, 0].tolist() == list(range(0, 27, 2)) + [27]  # 27 + 5 = 32
    assert maps["positions"][0, :, 1].tolist() == list(range(0, 27, 2)) + [27]


def test_batch_size_does_not_change_the_maps(model, image):
    one = occlusion_maps(model, image, label=1, size=8, stride=4, batch_size=1)
    for batch_size in (5, 64):
        other = occlusion_maps(model, image, label=1, size=8, stride=4, batch_size=batch_size)
        for key in ("activation", "probability"):
            np.testing.assert_allclose(other[key], one[key], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(other["label"], one["label"])
        assert other["feature_map"] == one["feature_map"]


def test_logits_get_softmax(model, image):
    probs = occlusion_maps(model, image, label=1, size=8, stride=4)
    logits = occlusion_maps(tiny_model(softmax=False), image, label=1, size=8, stride=4)
    np.testing.assert_allclose(logits["probability"], probs["probability"], atol=1e-6)
    assert logits["unoccluded_probability"] == pytest.approx(probs["unoccluded_probability"], abs=1e-6)


def test_bad_inputs_are_explained(model, image):
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion_maps(model, image, 1, size=33)
    with pytest.raises(ValueError, match="relu1") as error:
        occlusion_maps(model, image, 1, layer="conv5")
    assert "valid layers" in str(error.value) and "conv1" in str(error.value)
    with pytest.raises(ValueError, match=r"label 2 is out of range.*2 classes"):
        occlusion_maps(model, image, 2)
    with pytest.raises(ValueError, match="label -1 is out of range"):
        occlusion_maps(model, image, -1)
    with pytest.raises(ValueError, match=r"input shape \(32, 32, 3\)"):
        occlusion_maps(model, image[:16, :16], 1)
    with pytest.raises(ValueError, match=">= 1"):
        occlusion_maps(model, image, 1, size=0)
    with pytest.raises(ValueError, match=">= 1"):
        occlusion_maps(model, image, 1, size=4, stride=0)
    with pytest.raises(ValueError, match="not a feature map"):
        occlusion_maps(model, image, 1, layer="dense")


def test_figure_is_a_png_and_leaves_no_temporary_file(model, image, tmp_path):
    maps = occlusion_maps(model, image, label=1, size=8, stride=4)
    path = tmp_path / "occlusion.png"
    assert occlusion_figure(to_display(image), maps, str(path), class_names=["plain", "green square"]) == str(path)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["occlusion.png"]


def _panel(fig, letter):
    return next(ax for ax in fig.axes if ax.get_title().startswith(f"({letter})"))


def test_panel_c_is_the_deconv_projection_of_the_strongest_map(model):
    """Fig. 6 (c) projects (b)'s map, the strongest in total, though another map holds the
    largest single activation (the deconvnet's own default)."""
    from kzoo.visualize.deconv import Deconvnet
    from kzoo.visualize.occlusion import occlusion_plot, strongest_map_projection

    image = np.random.default_rng(3).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    image[REGION, REGION, 1] = 3.0
    image[25, 5, 0] = 100.0  # map 0 (red): the largest single activation, 100
    relu = np.maximum(image @ KERNEL, 0)
    assert relu.sum(axis=(0, 1)).argmax() == 1 and relu.max(axis=(0, 1)).argmax() == 0  # numpy reference

    maps = occlusion_maps(model, image, label=1, size=8, stride=8)
    assert (maps["layer"], maps["feature_map"]) == ("relu1", 1)
    maps.update(strongest_map_projection(model, image, maps))
    direct = Deconvnet(model)  # an independent call, the map named
    expected, units, _ = direct.project(image[None], "relu1", feature_map=1)
    np.testing.assert_array_equal(maps["projection"], expected[0])
    assert maps["projected_unit"] == tuple(units[0]) and units[0][2] == 1
    # 1x1 conv, ReLU: the projection is the green map's weights at its strongest pixel only.
    y, x = np.unravel_index(relu[..., 1].argmax(), (32, 32))
    reference = np.zeros_like(image)
    reference[y, x] = KERNEL[:, 1] * relu[y, x, 1]
    np.testing.assert_allclose(maps["projection"], reference, atol=1e-5)
    default, _, _ = direct.project(image[None], "relu1")  # map 0: what (c) must not show
    assert not np.allclose(default[0], expected[0])

    fig = occlusion_plot(to_display(image), maps)
    assert [ax.get_title()[:3] for ax in fig.axes[:5]] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    np.testing.assert_allclose(_panel(fig, "c").images[0].get_array(), to_display(expected[0]), atol=1e-6)
    assert _panel(fig, "c").get_title() == f"(c) map 1 at {(int(y), int(x))}, projected"


def test_panel_c_through_pooling_and_the_cli(tmp_path, monkeypatch):
    """A small ZFNet-like net (conv, ReLU, max-pool, conv, ReLU): (c) equals the deconvnet's
    projection of the map whose total is largest; the CLI draws it for every image."""
    from kzoo.visualize import occlusion
    from kzoo.visualize.deconv import Deconvnet
    from kzoo.visualize.run import main

    keras.utils.set_random_seed(4)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.ReLU(name="relu1")(keras.layers.Conv2D(4, 3, name="conv1")(inputs))
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.ReLU(name="relu2")(keras.layers.Conv2D(6, 3, name="conv2")(x))
    net = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))
    image = np.random.default_rng(5).normal(size=(24, 24, 3)).astype(np.float32)
    maps = occlusion.occlusion_maps(net, image, label=0, size=6, stride=6)
    totals = keras.Model(inputs, net.get_layer("relu2").output).predict(image[None], verbose=0)[0].sum(axis=(0, 1))
    assert maps["feature_map"] == int(totals.argmax())
    maps.update(occlusion.strongest_map_projection(net, image, maps))
    expected = Deconvnet(net).project(image[None], "relu2", feature_map=int(totals.argmax()))[0][0]
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(maps["projection"], expected, atol=1e-6)

    drawn = []
    real_save = occlusion.save_figure
    monkeypatch.setattr(occlusion, "save_figure", lambda fig, path: drawn.append(fig) or real_save(fig, path))
    assert main(["occlusion", "--model", "resnet20", "--classes", "10", "--limit", "2", "--size", "16",
                 "--stride", "16", "--out", str(tmp_path)]) == 0
    assert len(drawn) == 2 and all(_panel(fig, "c").images for fig in drawn)


def test_a_misclassified_image_is_marked_and_panel_e_names_at_most_eight_classes(model, image):
    from kzoo.visualize.occlusion import LEGEND, occlusion_plot

    right = occlusion_maps(model, image, label=1, size=8, stride=4)  # class 1 wins on the whole image (9 vs 8)
    assert right["unoccluded_label"] == 1
    fig = occlusion_plot(to_display(image), right, class_names=["plain", "green square"])
    assert _panel(fig, "a").get_title() == "(a) input: green square"
    wrong = occlusion_maps(model, image, label=0, size=8, stride=4)  # told the answer is class 0: misclassified
    fig = occlusion_plot(to_display(image), wrong, class_names=["plain", "green square"])
    panel = _panel(fig, "a")
    assert panel.get_title() == "(a) input: MISCLASSIFIED\nas green square" and panel.title.get_color() == "red"
    # a 1000-class answer map: the true class first, then the 7 largest areas, the rest one grey entry
    many = dict(right, label=np.arange(20).reshape(4, 5) % 12, true_label=11)
    many["label"][:2] = 3  # class 3 covers the most cells
    names = [f"kind {k}, a synonym, another one" for k in range(1000)]
    names[11] = "a class name longer than the panel, and a synonym"
    fig = occlusion_plot(to_display(image), many, class_names=names)
    texts = [t.get_text() for t in _panel(fig, "e").get_legend().get_texts()]
    assert len(np.unique(many["label"])) == 10  # classes 0-7, 10, 11 and 3
    assert len(texts) == LEGEND + 1 == 9 and texts[-1] == "2 other classes"
    assert texts[:2] == ["a class name longer tha… (true)", "kind 3"]
