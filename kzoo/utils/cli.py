"""argparse types shared by every kzoo command line.

A bad number is refused while the arguments are parsed, before anything is read
or written, with argparse's own error (exit code 2): "argument --epochs: expected
an integer >= 1, got '0'". Checks that need the model or the data (an input size
below the model's minimum, a feature map beyond a layer's channels) raise
`ValueError` naming the flag, through `flag_error`.
"""

import argparse
import contextlib
import math
import os
import sys


def _number(kind, accepted, test, name):
    noun = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or not test(value):
            raise argparse.ArgumentTypeError(f"expected {noun} {accepted}, got {text!r}")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


positive_int = _number(int, ">= 1", lambda v: v >= 1, "positive_int")
non_negative_int = _number(int, ">= 0", lambda v: v >= 0, "non_negative_int")
positive_float = _number(float, "> 0", lambda v: v > 0, "positive_float")
non_negative_float = _number(float, ">= 0", lambda v: v >= 0, "non_negative_float")


def float_between(low, high):
    """A number in [low, high] (e.g. a mean colour channel in [0, 255])."""
    return _number(float, f"in [{low:g}, {high:g}]", lambda v: low <= v <= high, "float_between")


def int_at_least(low):
    """An integer >= `low` (e.g. an image size that leaves a pixel after an 11x11 kernel)."""
    return _number(int, f">= {low}", lambda v: v >= low, f"int_at_least_{low}")


def flag_error(flag, value, accepted):
    """The ValueError for a flag whose value is only checkable after loading a model or data,
    worded as argparse's: "argument --label: 12 is out of range; expected 0..9 (...)"."""
    return ValueError(f"argument {flag}: {value} is out of range; expected {accepted}.")


def check_input_size(size, model_names, flag="--input-size"):
    """Refuse `size` below any of `model_names`' registry minimum (before a run starts)."""
    from kzoo import registry

    if size is None:
        return
    entries = [registry.get_entry(name) for name in model_names]
    low = max(entries, key=lambda e: e.min_size)
    if size < low.min_size:
        raise ValueError(f"argument {flag}: {size} is too small for {low.name}; expected an integer >= "
                         f"{low.min_size} (the paper uses {low.default_size}).")


def model_weights(model, weights):
    """--weights for --model: required, so that random weights are never scored by accident;
    "none" asks for them explicitly. Returns what the builders take (None: random)."""
    if weights is None:
        raise ValueError(f"argument --weights: --model {model} needs its trained weights: give --weights "
                         f"PATH (a .weights.h5 file or a weights name), or --weights none for random weights.")
    return None if weights.lower() == "none" else weights


def add_verbose_flag(parser):
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden otherwise, unless TF_CPP_MIN_LOG_LEVEL is set)")


def quiet_tensorflow(verbose=False):
    """Import TensorFlow without its start-up log lines (CUDA probing on machines without
    a GPU, CPU features) and keep its C++ logs quiet: call it once a command knows it
    needs TensorFlow, after its arguments are parsed (so --help never loads it).
    --verbose, or an explicit TF_CPP_MIN_LOG_LEVEL, leaves TensorFlow's logging as it is."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # read once, when TensorFlow loads
    # Some lines are written at load time whatever the level (TF 2.19+): hide stderr meanwhile.
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
