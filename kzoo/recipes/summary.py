"""Build a kzoo model, print its layers and its paper-vs-kzoo numbers, run one forward pass.

    python -m kzoo.recipes.summary alexnet
    python -m kzoo.recipes.summary resnet50 --option stride_placement=v1.5 --layers
"""

import argparse
import dataclasses
import sys
import time

import numpy as np

import kzoo
from kzoo import registry
from kzoo.utils.cli import ArgumentParser, add_flags, add_option_flag, add_verbose_flag, option, options_dict, run_command


def train_command(entry):
    """The recipe command that trains `entry`'s model with its paper's schedule."""
    name = entry.name
    if entry.paper == "overfeat":
        return f"python -m kzoo.recipes.overfeat --model {name.split('_')[1]}"
    if entry.paper == "resnet":
        depth = name.removeprefix("plain").removeprefix("resnet")
        recipe = "resnet_cifar" if entry.default_size == 32 else "resnet"
        return f"python -m kzoo.recipes.{recipe} --depth {depth}" + (" --plain" if name.startswith("plain") else "")
    return f"python -m kzoo.recipes.{entry.paper}"


def summarize(name, options=None, layers=False, batch=2, print_fn=print):
    """Build `name` with `options`, print the comparison table; returns the model."""
    entry = registry.get_entry(name)
    model = entry.builder(**(options or {}))
    if layers:
        model.summary(print_fn=print_fn)
    print_fn(kzoo.utils.report.model_section(entry, model))
    if options:
        print_fn(f"(The paper column is the paper's own configuration; {sorted(options)} change it.)")
    shape = (batch, *model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(-1, 1, size=shape).astype("float32")
    model(images)  # build and warm up
    start = time.perf_counter()
    outputs = np.asarray(model(images))
    seconds = time.perf_counter() - start
    print_fn(f"forward pass: {shape} -> {outputs.shape} in {seconds * 1000:.0f} ms (random input). "
             f"To train it: {train_command(entry)}")
    return model


@dataclasses.dataclass(frozen=True)
class SummaryOptions:
    """`python -m kzoo.recipes.summary`'s flags, declared once (--option: kzoo.utils.cli.add_option_flag)."""

    # Checked after parsing (the registry loads Keras; --help does not): a wrong name lists them all.
    model: str = option(positional=True, metavar="MODEL", help="a registered model: alexnet, zfnet, overfeat_fast, "
                        "overfeat_accurate, resnet18 ... resnet152, resnet20 ... resnet1202, plain18 ... "
                        "(kzoo.list_models())")
    layers: bool = option(False, help="print every layer (Keras summary)")


def main(argv=None):
    parser = ArgumentParser(prog="python -m kzoo.recipes.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, SummaryOptions, only=("model",))
    add_option_flag(parser, "towers=1, shortcut=A, input_shape=(227,227,3)", what="builder argument")
    add_flags(parser, SummaryOptions, only=("layers",))
    add_verbose_flag(parser)
    return run_command(parser, lambda args: summarize(args.model, options_dict(args.option), layers=args.layers),
                       argv, errors=(TypeError,))


if __name__ == "__main__":
    sys.exit(main())
