"""AlexNet Fig. 4 (left): `python -m kzoo.visualize predictions`, its bars against the
model's own softmax, on the shipped digits weights and the built-in digits."""

import numpy as np
import pytest
from PIL import Image

import kzoo
from kzoo.visualize import predictions
from kzoo.visualize.run import main

RED = (1.0, 0.0, 0.0, 1.0)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the command draws (save_figure still writes them)."""
    figures = []
    real_save = predictions.save_figure
    monkeypatch.setattr(predictions, "save_figure", lambda fig, path: figures.append(fig) or real_save(fig, path))
    return figures


def bars(fig, i):
    """(class names, lengths, colours) of image i's bars, top to bottom."""
    ax = next(ax for ax in fig.axes if ax.get_label() == f"predictions {i}")
    rects = sorted(ax.patches, key=lambda r: r.get_y())  # y axis inverted: the first bar is drawn on top
    names = [t.get_text() for t in sorted(ax.texts, key=lambda t: t.get_position()[1])]
    return names, np.array([r.get_width() for r in rects]), [tuple(r.get_facecolor()) for r in rects]


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Four validation digits of the built-in data as PNG files, and their labels."""
    source = kzoo.data.sources.load_source("digits")
    pairs = list(source.val.take(4))
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i, (image, _) in enumerate(pairs):
        paths.append(str(folder / f"d{i}.png"))
        Image.fromarray(image.numpy()).save(paths[-1])
    return paths, [int(label) for _, label in pairs]


def test_bars_are_the_models_top5_and_the_true_class_is_marked_only_in_the_top5(digit_files, drawn, tmp_path):
    paths, true = digit_files
    trained = kzoo.load("resnet20", weights="digits")
    # The independent reference: the model's softmax on the same preprocessed input, numpy's argsort.
    probs = trained.model.predict(trained.preprocess(paths), verbose=0)
    order = np.argsort(-probs, axis=1)
    labels = [true[0], int(order[1, 1]), int(order[2, -1]), true[3]]  # top-1, 2nd, last (not in top 5), true
    assert main(["predictions", "--model", "resnet20", "--weights", "digits", "--images", *paths,
                 "--labels", *map(str, labels), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.png"]
    (fig,) = drawn
    for i in range(4):
        names, lengths, colours = bars(fig, i)
        np.testing.assert_allclose(lengths, probs[i, order[i, :5]], rtol=1e-5, atol=1e-7)
        assert names == [trained.class_names[c] for c in order[i, :5]]
        marked = [rank for rank, colour in enumerate(colours) if colour == RED]
        in_top5 = list(order[i, :5]).index(labels[i]) if labels[i] in order[i, :5] else None
        assert marked == ([] if in_top5 is None else [in_top5]), (i, labels[i], order[i])
    assert bars(fig, 1)[2][1] == RED and bars(fig, 2)[2].count(RED) == 0  # the cases chosen above
    image_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in image_axes] == ["d0.png", "d1.png", "d2.png", "d3.png"]
    assert [ax.texts[0].get_text() for ax in image_axes] == [trained.class_names[c] for c in labels]


def test_dataset_images_bring_their_labels(drawn, tmp_path):
    assert main(["predictions", "--model", "resnet20", "--weights", "digits", "--limit", "3",
                 "--out", str(tmp_path)]) == 0
    (fig,) = drawn
    source = kzoo.data.sources.load_source("digits")
    labels = [int(label) for _, label in source.val.take(3)]
    image_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.texts[0].get_text() for ax in image_axes] == [str(c) for c in labels]
    assert sum(bars(fig, i)[2].count(RED) for i in range(3)) >= 2  # the digits weights know most digits


def test_without_labels_nothing_is_marked(digit_files, drawn, tmp_path):
    paths, _ = digit_files
    assert main(["predictions", "--model", "resnet20", "--weights", "digits", "--images", paths[0],
                 "--out", str(tmp_path)]) == 0
    (fig,) = drawn
    assert RED not in bars(fig, 0)[2] and not [ax for ax in fig.axes if ax.images][0].texts


def test_class_names_or_indices(capsys):
    names = ["cat", "dog", "7"]
    assert [predictions.class_index(v, names) for v in ("dog", "0", "7", "2")] == [1, 0, 2, 2]
    for bad in ("cow", "3", "-1"):
        with pytest.raises(ValueError, match=r"neither a class name \('cat', 'dog', '7'\) nor a class index 0..2"):
            predictions.class_index(bad, names)


def test_bad_labels_exit_2_and_say_the_fix(digit_files, tmp_path, capsys):
    paths, _ = digit_files
    model = ["predictions", "--model", "resnet20", "--weights", "digits", "--out", str(tmp_path)]
    for extra, message in (
            (["--images", *paths[:2], "--labels", "3"], "argument --labels: 1 labels for 2 --images files; give one"),
            (["--labels", "3"], "--labels names the correct classes of --images"),
            (["--images", paths[0], "--labels", "cat"], "'cat' is neither a class name ('0', '1', '2', '3', '4', "
                                                        "...) nor a class index 0..9")):
        with pytest.raises(SystemExit) as exit_info:
            main(model + extra)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
