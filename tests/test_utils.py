"""The MAC counter against hand arithmetic, and the generated architecture table."""

import pathlib
import re

import keras
import pytest

from kzoo.layers import TowerConv2D
from kzoo.utils import count_macs, layer_macs
from kzoo.utils.report import render

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_count_macs_by_hand():
    inputs = keras.Input((9, 9, 4))
    x = keras.layers.Conv2D(6, 3, strides=2, name="a")(inputs)  # 4x4x6 out, 3*3*4 per output
    x = TowerConv2D(8, 3, towers=2, padding="same", name="b")(x)  # 4x4x8 out, 3*3*3 per output
    x = keras.layers.MaxPooling2D(2, name="pool")(x)  # not counted
    x = keras.layers.Conv2D(10, 1, groups=2, name="c")(x)  # 2x2x10 out, 1*1*4 per output
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="d")(x)  # 40*5
    model = keras.Model(inputs, outputs)
    expected = {"a": 16 * 6 * 36, "b": 16 * 8 * 27, "c": 4 * 10 * 4, "d": 40 * 5}
    assert layer_macs(model) == expected
    assert count_macs(model) == sum(expected.values())
    outer = keras.Model(inputs, keras.layers.Dense(3, name="e")(model(inputs)))
    assert layer_macs(outer) == {**{f"{model.name}/{k}": v for k, v in expected.items()}, "e": 15}


def test_count_macs_needs_static_sizes():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="conv.*fixed input_shape"):
        count_macs(model)


def test_docs_architectures_table_is_current(built):
    text = render(build=built)
    assert "**NO**" not in text
    current = (ROOT / "docs" / "architectures.md").read_text(encoding="utf-8")
    assert current == text, "stale: run python -m kzoo.utils.report --output docs/architectures.md"


def test_model_option_reads_python_literals_and_lower_case_words():
    import argparse

    from kzoo.utils.cli import model_option

    assert [model_option(text) for text in ("towers=1", "lrn=false", "lrn=False", "tower_devices=none",
                                            "remove_layers=3,4", "remove_layers=(3,)", "init=caffe",
                                            "stride_placement=v1.5", "filter_radius=0.05", " shortcut = A ")] == [
        ("towers", 1), ("lrn", False), ("lrn", False), ("tower_devices", None), ("remove_layers", (3, 4)),
        ("remove_layers", (3,)), ("init", "caffe"), ("stride_placement", "v1.5"), ("filter_radius", 0.05),
        ("shortcut", "A")]
    for text in ("towers", "=1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected KEY=VALUE \\(e.g. towers=1\\), got {text!r}"):
            model_option(text)


def test_progress_bars_are_one_line_in_a_log(capsys):
    """Output that is not a terminal (a log file, a pipe, capsys) gets the finished bar as one
    line, not a line or backspaces per update; rates are whole numbers."""
    from kzoo.utils.progress import progress_bar, rate

    assert rate(363, 2.0) == 181.5
    bar = progress_bar(100, unit_name="image", stateful_metrics=["images/s"])
    for done in range(1, 101):
        bar.update(done, [("images/s", rate(done, 0.5517))])
    out = capsys.readouterr().out
    assert "\b" not in out and out.count("\n") == 1, repr(out)
    assert out.startswith("100/100 - ") and out.endswith(" - images/s: 181\n")  # whole: not Keras's 181.2579
    progress_bar(10, verbose=0).update(10)
    assert capsys.readouterr().out == ""



def test_an_option_declared_once_gives_the_flag_its_help_and_the_same_refusal_in_python(capsys):
    import dataclasses

    from kzoo.utils.cli import (ArgumentParser, add_flags, check_flags, flags_from, float_between, folder, option,
                                positive_int)

    @dataclasses.dataclass(frozen=True)
    class Options:
        images: list = option(positional=True, nargs="+", help="files")
        out: str = option(rule=folder, required=True, help="where, for {who}")
        epochs: int = option(3, rule=positive_int, help="epochs")
        mean: list = option(rule=float_between(0, 255), nargs=3, help="colour")
        transform: list = option(nargs="+", choices=("a", "b"), help="which")
        background: bool = option(negatable=True, help="keep it")
        quiet: bool = option(False, help="no bars")

        def __post_init__(self):
            check_flags(self)

    parser = ArgumentParser(prog="p")
    add_flags(parser, Options, context={"who": "you"})
    assert "where, for you" in parser.format_help()
    args = parser.parse_args(["x.png", "y.png", "--out", "o", "--mean", "1", "2", "3", "--no-background"])
    options = flags_from(Options, args)
    assert options == Options(["x.png", "y.png"], "o", 3, [1.0, 2.0, 3.0], None, False, False)
    assert flags_from(Options, parser.parse_args(["x", "--out", "o"])).background is None  # not given: None
    for argv, said in ((["x", "--out", "o", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
                       (["x"], "the following arguments are required: --out"),
                       (["x", "--out", "o", "--transform", "c"], "argument --transform: invalid choice: 'c'")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2 and said in capsys.readouterr().err
    # The same rules, in the same words, for options built in Python.
    for values, said in (({"epochs": 0}, "argument --epochs: expected an integer >= 1, got 0"),
                         ({"out": ""}, "argument --out: expected a folder, got ''; leave --out out for the default."),
                         ({"mean": [1, 2, 300]}, "argument --mean: expected a number in [0, 255], got 300"),
                         ({"transform": ["a", "c"]}, "argument --transform: invalid choice: 'c'"),
                         ({"quiet": 1}, "argument --quiet: expected True or False, got 1"),
                         ({"images": "x.png"}, "argument images: expected a list of values, got 'x.png'"),
                         ({"images": []}, "argument images: expected at least one value, got none"),
                         ({"mean": [1, 2]}, "argument --mean: expected 3 values, got 2 ([1, 2])")):
        with pytest.raises(ValueError, match=re.escape(said)):
            Options(**{"images": ["x"], "out": "o", **values})
    from kzoo.evaluate.run import EvaluateOptions

    with pytest.raises(ValueError, match=re.escape("argument --run-dir: expected a list of values, got 'runs/a'")):
        EvaluateOptions(run_dir="runs/a")  # one run is a list of one: a string would be read letter by letter


def test_precision_names_and_the_cpu_note():
    from kzoo.utils import precision

    assert precision.check_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match=r"dtype must be one of float32, mixed_float16, mixed_bfloat16 .*got 'bf16'"):
        precision.check_precision("bf16")
    assert [precision.loss_scaled(p) for p in precision.PRECISIONS] == [False, True, False]
    # runs before --precision record mixed_precision; before that, nothing
    assert precision.recorded({}) == "float32"
    assert precision.recorded({"mixed_precision": True}) == "mixed_float16"
    assert precision.recorded({"precision": "mixed_bfloat16", "mixed_precision": False}) == "mixed_bfloat16"
    for damaged in ("int8", ["float32"], 16):
        with pytest.raises(ValueError, match="config.json is damaged: its precision"):
            precision.recorded({"precision": damaged})
    assert precision.has_amx({"avx512f", "amx_tile", "amx_bf16"}) and not precision.has_amx({"avx2", "avx512f"})
    assert "no AMX bfloat16 tiles" in precision.cpu_note("mixed_bfloat16", {"avx2"})
    assert precision.cpu_note("mixed_bfloat16", {"amx_bf16"}) is None and precision.cpu_note("float32", {"avx2"}) is None
