"""kzoo.visualize.analysis against independent numpy / Keras references, on small nets."""

import numpy as np
import pytest

import keras

import kzoo
from kzoo.layers import FilterRMSNorm
from kzoo.visualize import analysis

SMALL = (67, 67, 3)  # the smallest input AlexNet's stack accepts: fast to build and run


@pytest.fixture(scope="module")
def alex():
    keras.utils.set_random_seed(0)
    return kzoo.alexnet(input_shape=SMALL, weights=None)


@pytest.fixture(scope="module")
def cifar():
    keras.utils.set_random_seed(1)
    return {"resnet20": kzoo.resnet20(weights=None), "plain20": kzoo.plain20(weights=None)}


def images(n, shape, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def assert_png(path, folder):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in folder.iterdir()] == [path.name]  # no leftover .tmp-*


def test_first_layer_filters_are_conv1_kernels(alex, cifar, tmp_path):
    kernel = alex.get_layer("conv1").get_weights()[0]  # (11, 11, 3, 96)
    filters = analysis.first_layer_filters(alex)
    assert filters.shape == (96, 11, 11, 3)
    np.testing.assert_array_equal(filters[5], kernel[:, :, :, 5])
    np.testing.assert_array_equal(filters, np.moveaxis(kernel, -1, 0))

    res = analysis.first_layer_filters(cifar["resnet20"])
    np.testing.assert_array_equal(res, np.moveaxis(cifar["resnet20"].get_layer("conv1_conv").get_weights()[0], -1, 0))
    assert res.shape == (16, 3, 3, 3)

    # A TowerConv2D: its towers' filters, tower 0 first.
    conv2 = alex.get_layer("conv2")
    towers = np.concatenate([t.get_weights()[0] for t in conv2.towers], axis=-1)
    tower_filters = analysis.first_layer_filters(alex, "conv2")
    assert tower_filters.shape == (256, 5, 5, 48)
    np.testing.assert_array_equal(tower_filters, np.moveaxis(towers, -1, 0))

    path = tmp_path / "filters.png"
    assert analysis.filter_grid_figure(alex, str(path), columns=12) == str(path)
    assert_png(path, tmp_path)
    with pytest.raises(ValueError, match="48 input channels"):
        analysis.filter_grid_figure(alex, str(tmp_path / "conv2.png"), layer="conv2")
    with pytest.raises(ValueError, match="not a convolution"):
        analysis.first_layer_filters(alex, "relu1")


def test_filter_rms_matches_numpy_and_the_constraint():
    keras.utils.set_random_seed(2)
    model = kzoo.alexnet(input_shape=SMALL, weights=None)
    conv1 = model.get_layer("conv1")
    kernel, bias = conv1.get_weights()
    kernel[..., 0] = 1.0  # RMS exactly 1
    kernel[..., 1] = 0.5  # RMS exactly 0.5
    kernel[..., 2] = np.tile([3.0, -4.0], 11 * 11 * 3 // 2 + 1)[: 11 * 11 * 3].reshape(11, 11, 3)
    conv1.set_weights([kernel, bias])

    rms = analysis.filter_rms(model)
    assert list(rms) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert rms["conv1"][0] == 1.0 and rms["conv1"][1] == 0.5
    values = kernel[..., 2].ravel()
    assert rms["conv1"][2] == pytest.approx(np.sqrt(np.mean(values**2)), rel=1e-6)
    np.testing.assert_allclose(rms["conv1"], np.sqrt((kernel.astype(np.float64) ** 2).mean(axis=(0, 1, 2))), rtol=1e-6)
    conv4 = np.concatenate([t.get_weights()[0] for t in model.get_layer("conv4").towers], axis=-1)
    assert rms["conv4"].shape == (384,)
    np.testing.assert_allclose(rms["conv4"], np.sqrt((conv4.astype(np.float64) ** 2).mean(axis=(0, 1, 2))), rtol=1e-6)

    # Same definition as the ZFNet constraint: after it, every filter is at or below the radius
    # and the ones above were brought exactly to it.
    conv1.set_weights([keras.ops.convert_to_numpy(FilterRMSNorm(0.2)(kernel)), bias])
    after = analysis.filter_rms(model, ["conv1"])["conv1"]
    np.testing.assert_allclose(after[:3], 0.2, rtol=1e-6)
    np.testing.assert_allclose(after[3:], rms["conv1"][3:], rtol=1e-6)  # ~0.01: untouched

    report = analysis.rms_report(rms, radius=0.5)
    line = next(l for l in report.splitlines() if l.startswith("conv1 "))
    assert line.split()[1] == "96" and line.split()[-1] == "2"  # 1.0 and 3.54 > 0.5; 0.5 is not
    assert "> 0.5" in report.splitlines()[0]
    assert next(l for l in report.splitlines() if l.startswith("conv3 ")).split()[-1] == "0"
    assert "> " not in analysis.rms_report(rms).splitlines()[0]


def brute_force(q, t, k):
    d = np.sqrt(((q[:, None, :].astype(np.float64) - t[None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def test_nearest_neighbours_exact():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(3)
    train = rng.normal(size=(300, 16)).astype(np.float32) + 1000.0  # large norms: expansion cancels
    query = rng.normal(size=(9, 16)).astype(np.float32) + 1000.0
    query[4] = train[123]
    idx, dist = analysis.nearest_neighbours(query, train, k=6, chunk=4)
    ref_idx, ref_dist = brute_force(query, train, 6)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)
    assert idx[4, 0] == 123 and dist[4, 0] == 0.0
    assert np.all(np.diff(dist, axis=1) >= 0)
    sk_dist, sk_idx = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(train).kneighbors(query)
    np.testing.assert_array_equal(idx, sk_idx)

    all_idx, _ = analysis.nearest_neighbours(query, train[:7], k=7)  # k == N
    np.testing.assert_array_equal(all_idx, brute_force(query, train[:7], 7)[0])
    with pytest.raises(ValueError, match="k must be"):
        analysis.nearest_neighbours(query, train[:5], k=6)
    with pytest.raises(ValueError, match="Features must be"):
        analysis.nearest_neighbours(query[:, :3], train, k=1)


def test_hidden_features_and_neighbours_figure(alex, cifar, tmp_path):
    x = images(5, SMALL, seed=4)
    feats = analysis.hidden_features(alex, x, batch_size=2)  # batches of 2, 2, 1
    assert feats.shape == (5, 4096)
    ref = keras.Model(alex.input, alex.get_layer("relu7").output).predict(x, verbose=0)
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-5)  # batch-size-dependent kernels
    assert feats.min() >= 0 and feats.max() > 0

    res = cifar["resnet20"]
    cx = images(3, (32, 32, 3), seed=5)
    pooled = analysis.hidden_features(res, cx)
    ref = keras.Model(res.input, res.get_layer("avg_pool").output).predict(cx, verbose=0)
    np.testing.assert_allclose(pooled, ref, rtol=1e-5, atol=1e-5)
    pool2 = analysis.hidden_features(alex, x[:2], layer="pool2")  # a feature map, flattened
    assert pool2.shape == (2, 3 * 3 * 256)

    idx, _ = analysis.nearest_neighbours(feats[:2], feats, k=3)
    assert list(idx[:, 0]) == [0, 1]
    path = tmp_path / "neighbours.png"
    raw = (x * 50).astype(np.float32)  # outside [0, 1]: min-max normalized for display
    assert analysis.neighbours_figure(raw[:2], raw, idx, str(path)) == str(path)
    assert_png(path, tmp_path)


def bn_after_3x3(model):
    """Independent count: the BN named after each 3x3 Conv2D (`*_conv` -> `*_bn`)."""
    convs = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.kernel_size == (3, 3)]
    return [name[: -len("_conv")] + "_bn" for name in convs]


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_layer_responses_match_numpy(cifar, name):
    model = cifar[name]
    # Non-trivial BN statistics, so its output is not the conv output.
    rng = np.random.default_rng(6)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2, c)])
    x = images(5, (32, 32, 3), seed=7)
    responses = analysis.layer_responses(model, x, batch_size=2)
    expected = bn_after_3x3(model)
    assert len(expected) == 19  # conv1 + 3 stages x 3 blocks x 2 convs
    assert [n for n, _ in responses] == expected
    outs = keras.Model(model.input, [model.get_layer(n).output for n in expected]).predict(x, verbose=0)
    for (_, std), out in zip(responses, outs):
        ref = out.astype(np.float64).std(axis=(0, 1, 2)).mean()
        assert std == pytest.approx(ref, rel=1e-4, abs=1e-4)


def test_responses_figure_and_errors(alex, cifar, tmp_path):
    x = images(2, (32, 32, 3), seed=8)
    results = {"plain-20": analysis.layer_responses(cifar["plain20"], x),
               "ResNet-20": analysis.layer_responses(cifar["resnet20"], x)}
    path = tmp_path / "responses.png"
    assert analysis.responses_figure(results, str(path)) == str(path)
    assert_png(path, tmp_path)

    with pytest.raises(ValueError, match="BatchNormalization after a 3x3"):
        analysis.layer_responses(alex, images(1, SMALL))
    with pytest.raises(ValueError, match=r"no layer 'conv9'.*valid layers: .*conv1"):
        analysis.filter_rms(alex, ["conv9"])
    with pytest.raises(ValueError, match=r"no layer 'fc9'.*relu7"):
        analysis.hidden_features(alex, images(1, SMALL), layer="fc9")
    with pytest.raises(ValueError, match=r"valid layers: .*conv1"):
        analysis.first_layer_filters(alex, "nope")
    with pytest.raises(ValueError, match="at least one"):
        analysis.responses_figure({}, str(tmp_path / "x.png"))


def _panels(fig):
    """The image panels of a figure, in drawing order (top first): (title, image array)."""
    return [(ax.get_title(), np.asarray(ax.images[0].get_array())) for ax in fig.axes if ax.images]


def test_alexnet_conv1_filters_are_drawn_one_panel_per_tower(tmp_path):
    """AlexNet Fig. 3: 48 + 48 kernels, each panel the kernels that feed one conv2 tower."""
    from kzoo.visualize.common import grid, to_display

    keras.utils.set_random_seed(9)
    model = kzoo.alexnet(input_shape=SMALL, weights=None, lrn=False)  # no LRN: a map reaches one tower only
    kernel, bias = model.get_layer("conv1").get_weights()  # (11, 11, 3, 96)
    groups = analysis.filter_groups(model)
    assert [list(indices) for _, indices in groups] == [list(range(48)), list(range(48, 96))]

    # Independently of the grouping code: a conv1 filter feeds exactly the conv2 tower of its
    # group. Zero it and only that tower's half of conv2 changes.
    x = images(1, SMALL, seed=10)
    probe = keras.Model(model.input, model.get_layer("conv2").output)
    before = probe.predict(x, verbose=0)
    for tower, (title, indices) in enumerate(groups):
        assert f"conv2_tower{tower}" in title
        for k in (indices[0], indices[-1]):
            cut_kernel, cut_bias = kernel.copy(), bias.copy()
            cut_kernel[..., k], cut_bias[k] = 0.0, 0.0
            model.get_layer("conv1").set_weights([cut_kernel, cut_bias])
            change = np.abs(probe.predict(x, verbose=0) - before).reshape(-1, 2, 128).max(axis=(0, 2))
            model.get_layer("conv1").set_weights([kernel, bias])
            assert change[tower] > 1e-6 and change[1 - tower] == 0.0, (k, change)

    # The figure: panel t is the mosaic of exactly those kernels, 16 to a row (Fig. 3).
    fig = analysis.filter_grid_plot(model)
    panels = _panels(fig)
    assert len(panels) == 2
    for (title, shown), (_, indices) in zip(panels, groups):
        expected = grid([to_display(kernel[..., k]) for k in indices], 16)
        assert shown.shape == expected.shape == (3 * 12 - 1, 16 * 12 - 1, 3)
        np.testing.assert_array_equal(shown, expected)
    path = tmp_path / "filters.png"
    assert analysis.filter_grid_figure(model, str(path)) == str(path)
    assert_png(path, tmp_path)

    # A TowerConv2D's own towers are its groups.
    conv2 = analysis.filter_groups(model, "conv2")
    assert [(t.split(": ")[1], len(i)) for t, i in conv2] == [("tower 0 (conv2_tower0)", 128),
                                                               ("tower 1 (conv2_tower1)", 128)]


def test_one_tower_nets_draw_one_grid(cifar):
    from kzoo.visualize.common import grid, to_display

    keras.utils.set_random_seed(11)
    one = kzoo.alexnet(input_shape=SMALL, weights=None, towers=1)  # §3.2: 48 conv1 kernels, no towers
    for model, conv, n in ((one, "conv1", 48), (cifar["resnet20"], "conv1_conv", 16)):
        kernel = model.get_layer(conv).get_weights()[0]
        assert [list(i) for _, i in analysis.filter_groups(model)] == [list(range(n))]
        panels = _panels(analysis.filter_grid_plot(model))
        assert len(panels) == 1 and panels[0][0] == f"{conv}: {n} filters"
        columns = int(np.ceil(np.sqrt(n)))
        np.testing.assert_array_equal(panels[0][1], grid([to_display(kernel[..., k]) for k in range(n)], columns))


def test_filters_still_at_their_random_start_are_said_to_be(alex):
    """A fresh net's conv1 (N(0, 0.01) draws) is noise; smooth kernels (a learned net's kind)
    are not. The correlation is checked against numpy's on the adjacent pairs."""
    rng = np.random.default_rng(0)
    fresh = analysis.first_layer_filters(alex)
    r = analysis.neighbour_correlation(fresh)
    assert abs(r) < 0.05
    note = analysis.noise_note(alex)
    assert note.startswith(f"note: these filters are still close to their random start (neighbouring weights "
                           f"correlate at r = {r:.2f};")
    # smooth kernels: a random field blurred by a 3-tap box along both axes
    field = rng.normal(size=(96, 13, 13, 3))
    smooth = sum(field[:, i:i + 11, j:j + 11] for i in range(3) for j in range(3))
    r = analysis.neighbour_correlation(smooth)
    centred = smooth - smooth.mean(axis=(1, 2, 3), keepdims=True)
    pairs = np.array([(f[y, x, c], f[y, x + 1, c]) for f in centred for y in range(11) for x in range(10)
                      for c in range(3)] + [(f[y, x, c], f[y + 1, x, c]) for f in centred for y in range(10)
                                            for x in range(11) for c in range(3)])
    assert r == pytest.approx(np.corrcoef(pairs.T)[0, 1]) and r > 0.5
    model = kzoo.alexnet(classes=10, input_shape=(67, 67, 3))
    kernel = model.get_layer("conv1").kernel
    kernel.assign(np.transpose(smooth, (1, 2, 3, 0)).astype("float32") * 0.01)
    assert analysis.noise_note(model) is None
    assert analysis.neighbour_correlation(np.zeros((4, 1, 1, 3))) is None  # 1x1 kernels: no neighbours
