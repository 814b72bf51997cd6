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
        main(["deconv", "--model", "resnet20", "--images", str(tmp_path / "none.jpg")])
    assert "does not exist" in capsys.readouterr().err


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
