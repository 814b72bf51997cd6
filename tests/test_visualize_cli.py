"""`python -m kzoo.visualize`: every command writes its figure(s) from the built-in digits."""

import pytest

from kzoo.visualize.run import main


@pytest.mark.parametrize("command, extra, names", [
    ("deconv", ["--layer", "conv2_block1_out", "--limit", "2"], ["deconv-conv2_block1_out.png"]),
    ("top9", ["--maps", "0", "3", "--limit", "20"], ["top9-conv4_block3_out.png"]),
    ("occlusion", ["--limit", "2", "--size", "8", "--stride", "8"], ["occlusion-0.png", "occlusion-1.png"]),
    ("filters", ["--radius", "0.5"], ["filters.png"]),
    ("neighbours", ["--limit", "3", "--train-limit", "40"], ["neighbours.png"]),
])
def test_each_command_writes_its_figures(tmp_path, capsys, command, extra, names):
    out = tmp_path / "figs"
    assert main([command, "--model", "resnet20", "--classes", "10", "--out", str(out), *extra]) == 0
    assert sorted(p.name for p in out.iterdir()) == names
    assert all(open(out / n, "rb").read(4) == b"\x89PNG" for n in names)
    printed = capsys.readouterr().out
    assert all(f"wrote {out / n}" in printed for n in names)
    if command == "filters":
        assert "conv1_conv" in printed  # the RMS report


def test_responses_compare_several_models(tmp_path):
    out = tmp_path / "figs"
    assert main(["responses", "--model", "resnet20", "plain20", "--classes", "10", "--limit", "4",
                 "--out", str(out)]) == 0
    assert (out / "responses.png").exists()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["deconv", "--model", "resnet20", "--classes", "10", "--layer", "relu9", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no layer 'relu9'; valid layers: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["deconv", "--out", str(tmp_path)])
    assert "give either --run-dir RUN or --model NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["occlusion", "--model", "resnet20", "--classes", "10", "--size", "64", "--limit", "1",
              "--out", str(tmp_path)])
    assert "argument --size: 64 is out of range; expected 1..32 (the model's 32px input)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["deconv", "--model", "resnet20", "--images", str(tmp_path / "none.jpg"), "--out", str(tmp_path)])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # never ./figures unasked
        main(["deconv", "--model", "resnet20", "--weights", "digits"])
    assert capsys.readouterr().err.strip().endswith("error: --out FOLDER: where the figures go; give it with --model "
                                                    "(with --run-dir they go into RUN/figures).")


def test_registered_weights_bring_their_mean(tmp_path, capsys):
    import numpy as np

    from kzoo.visualize.run import build_parser, load_inputs, load_model
    from kzoo.weights import mean

    args = build_parser().parse_args(["deconv", "--model", "resnet20", "--weights", "digits", "--limit", "3"])
    trained, _ = load_model(args)
    np.testing.assert_array_equal(trained.mean, mean("resnet20", "digits"))  # the per-pixel mean image
    images, labels = load_inputs(args, trained)
    assert images.shape == (3, 32, 32, 3)
    predictions = np.argmax(trained.model(images), axis=1)
    assert (predictions == labels).sum() >= 2  # the shipped digits weights recognize the digits
    assert main(["deconv", "--model", "resnet20", "--weights", "digits", "--limit", "2",
                 "--out", str(tmp_path)]) == 0


def _png_size(path):
    import struct

    with open(path, "rb") as f:
        header = f.read(24)
    return struct.unpack(">II", header[16:24])  # IHDR: width, height


def test_deconv_pages_eight_images_to_a_file(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["deconv", "--model", "resnet20", "--classes", "10", "--layer", "conv2_block1_out",
                 "--limit", "10", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["deconv-conv2_block1_out-1.png", "deconv-conv2_block1_out-2.png"]  # 8 + 2 rows
    (w1, h1), (w2, h2) = (_png_size(out / n) for n in names)
    assert h1 < 8 * 300 + 60 and 3 * h2 < h1  # a row is 3 in at 100 dpi
    assert "--limit N" not in capsys.readouterr().out  # --limit was given


def test_deconv_titles_name_the_unit_in_plain_integers():
    import numpy as np

    from kzoo.visualize.deconv import deconv_figure

    pictures, projections = np.zeros((2, 8, 8, 3)), np.random.default_rng(0).normal(size=(2, 8, 8, 3))
    fig = deconv_figure(pictures, projections, np.array([[5, 4, 12], [0, 7, 3]], np.int64), "relu5")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["image 1", "relu5 map 12 at (5, 4)", "image 2", "relu5 map 3 at (0, 7)"]
    assert fig._suptitle.get_text() == "relu5: deconvnet projections to pixel space (ZFNet §2.1), one unit per image"
    named = deconv_figure(pictures, projections, np.array([[5, 4, 12], [0, 7, 3]], np.int64), "relu5",
                          names=["cat.jpg", "val 1"])
    assert [ax.get_title() for ax in named.axes][::2] == ["cat.jpg", "val 1"]


def test_occlusion_draws_the_picture_and_no_offset_over_the_title():
    import numpy as np

    from kzoo.visualize.occlusion import occlusion_plot

    picture = np.random.default_rng(1).uniform(size=(12, 12, 3))
    positions = np.stack(np.meshgrid([0, 6], [0, 6], indexing="ij"), -1)
    maps = {"activation": np.array([[1.0, 2.0], [3.0, 4.0]]), "feature_map": 0, "true_label": 3,
            "probability": np.array([[0.99991, 0.99995], [0.99993, 0.99999]]),  # p ~ 1: once drew "+9.999e-1"
            "label": np.array([[3, 3], [1, 3]]), "positions": positions, "size": 6, "stride": 6}
    fig = occlusion_plot(picture, maps)
    fig.canvas.draw()
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), picture)  # the picture, as given
    colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colourbars) == 2
    for bar in colourbars:
        assert bar.yaxis.get_offset_text().get_text() == ""
    ticks = [t.get_text() for t in colourbars[1].get_yticklabels() if t.get_text()]
    assert ticks and all(0.9999 <= float(t) <= 1.0 for t in ticks)  # whole values, e.g. "0.99992"


def test_occlusion_defaults_to_eight_images_and_the_pictures_are_the_inputs_plus_mean(tmp_path, capsys):
    import numpy as np

    from kzoo.visualize.run import build_parser, load_inputs, load_model

    out = tmp_path / "figs"
    assert main(["occlusion", "--model", "resnet20", "--classes", "10", "--size", "16", "--stride", "16",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"occlusion-{i}.png" for i in range(8)]
    assert "(at most 8 images by default; --limit N draws N)" in capsys.readouterr().out
    files = tmp_path / "mine"
    files.mkdir()
    for i in range(9):  # 9 files: the default draws 8 and says so; 2 files: all drawn, nothing said
        np.save(files / f"{i}.npy", 0)  # not images: never listed
        from PIL import Image

        Image.fromarray(np.full((20, 20, 3), 20 * i, np.uint8)).save(files / f"{i}.png")
    for count, said in ((9, True), (2, False)):
        paths = [str(files / f"{i}.png") for i in range(count)]
        out = tmp_path / f"figs{count}"
        assert main(["occlusion", "--model", "resnet20", "--classes", "10", "--size", "16", "--stride", "16",
                     "--label", "0", "--images", *paths, "--out", str(out)]) == 0
        assert len(list(out.iterdir())) == min(count, 8)
        assert ("(at most 8 images by default" in capsys.readouterr().out) is said
    args = build_parser().parse_args(["occlusion", "--model", "resnet20", "--weights", "digits", "--limit", "3"])
    trained, _ = load_model(args)
    mean = trained.mean
    images, _, pictures = load_inputs(args, trained, pictures=True)
    top = (mean.shape[0] - 32) // 2  # the centre view of the run's mean image
    for image, picture in zip(images, pictures):
        np.testing.assert_allclose(picture * 255 - image, mean[top : top + 32, top : top + 32], atol=1e-3)
