"""ZFNet's transfer protocol (§5.2-5.3) as a command; `caltech101` and `caltech256` run it.

    python -m kzoo.recipes.caltech101 --model zfnet --weights W.weights.h5 --data-dir DIR
    python -m kzoo.recipes.caltech101 --run-dir runs/zfnet-zfnet-imagenet2012 --data-dir DIR --per-layer svm
    python -m kzoo.recipes.caltech256 --model alexnet --weights W.weights.h5 --data-dir DIR --from-scratch
    python -m kzoo.recipes.caltech256 ... --data-dir DIR --exclude overlap.csv   # §5.2: without ImageNet's copies
    python -m kzoo.recipes.caltech256 ... --per-class 1 2 3 5 10 15 20 25 30 45 60  # Fig. 7: OUT/curve.png
"""

import argparse
import dataclasses
import functools
import os
import sys

import kzoo
from kzoo import registry
from kzoo.data.caltech import DATASETS, load_collection
from kzoo.data.overlap import read_list
from kzoo.recipes.backbone import Backbone, check_model_flags, load_trained, mean_colour
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, flags_from, folder, non_negative_int, option,
                            positive_float, positive_int, run_command)


@dataclasses.dataclass(frozen=True)
class CaltechOptions(Backbone):
    """One run of ZFNet's Caltech protocol, typed: each flag declared once (its help filled in
    per dataset). None: the dataset's default (DATASETS)."""

    data_dir: str = option(rule=folder, required=True, help="the {folder} folder (or its parent){tfds}")
    exclude: str = option(metavar="LIST", help="leave out the images LIST names (relative to the {folder} folder): "
                          "`python -m kzoo.data.overlap --out` (§5.2's images found in ImageNet), or one path a line")
    per_class: list = option(rule=positive_int, nargs="+", help="training images per class (default: {per_class}); "
                             "several sizes also draw Fig. 7, accuracy against them, in OUT/curve.png")
    test_max: int = option(rule=positive_int, help="test images per class at most (default {test_max})")
    folds: int = option(5, rule=positive_int, help="random train/test folds (default 5)")
    seed: int = option(0, rule=non_negative_int, help="seed of the folds and of the mean colour's images")
    background: bool = option(negatable=True, help="keep the {background} class (default: {kept}, as the paper's "
                              "comparisons)")
    layer: str = option(help="feature layer (default: the last hidden ReLU, relu7)")
    C: float = option(1.0, rule=positive_float, help="inverse L2 strength of the softmax (default 1)")
    per_layer: str = option(choices=("svm", "softmax"), help="also classify the features of every layer 1-7 "
                            "(Table 6)")
    from_scratch: bool = option(False, help="also reset layers 1-7 and train everything on each fold (the paper's "
                                "baseline)")
    scratch_epochs: int = option(30, rule=positive_int, help="with --from-scratch: training epochs per fold "
                                 "(default 30)")
    out: str = option(rule=folder, help="results folder (default runs/{dataset}-<model>)")


def build_parser(dataset):
    spec = DATASETS[dataset]
    parser = ArgumentParser(
        prog=f"python -m kzoo.recipes.{dataset}", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, CaltechOptions, context={
        "dataset": dataset, "folder": spec["folder"], "per_class": " ".join(map(str, spec["per_class"])),
        "test_max": spec["test_max"], "background": spec["background"],
        "kept": "kept" if spec["with_background"] else "left out",
        "tfds": ", or a tfds data_dir with caltech101 prepared" if dataset == "caltech101" else ""})
    add_verbose_flag(parser)
    return parser


def run(dataset, options):
    """The protocol's results for `options` (CaltechOptions) on `dataset`."""
    spec = DATASETS[dataset]
    background = spec["with_background"] if options.background is None else options.background
    per_class = list(spec["per_class"]) if options.per_class is None else options.per_class
    test_max = spec["test_max"] if options.test_max is None else options.test_max
    check_model_flags(options)  # before reading the images
    exclude = read_list(options.exclude) if options.exclude else None
    collection = load_collection(dataset, options.data_dir, background, exclude)
    print(f"{dataset}: {len(collection.images)} images in {len(collection.class_names)} classes"
          + (f" ({len(collection.excluded)} excluded, as {options.exclude} lists)." if options.exclude else "."))
    # weights of unknown provenance (a file, or none) see the dataset's mean colour unless told
    trained, identity, run_options = load_trained(options, lambda: mean_colour(collection, seed=options.seed))
    name = trained.name
    size = trained.input_size
    scratch_fn = functools.partial(registry.create_model, name, input_shape=(size, size, 3),
                                   classes=len(collection.class_names), **run_options) if options.from_scratch else None
    out = options.out or os.path.join("runs", f"{dataset}-{name}")
    results = kzoo.tasks.transfer.run_protocol(
        trained, collection, per_class, test_max, options.folds, options.seed, options.layer, options.C, out, identity,
        options.per_layer, scratch_fn, options.scratch_epochs)
    print(kzoo.tasks.transfer.results_table(results))
    curve = kzoo.tasks.transfer.write_curve(out, results, DATASETS[dataset]["paper"])  # Fig. 7: several sizes
    print(f"Results: {out}/results.json, {out}/results.md" + (f", {curve}" if curve else ""))
    return results


def main(dataset, argv=None):
    def checks(parser, args):
        if "scratch_epochs" in parser.given and not args.from_scratch:
            parser.error("--scratch-epochs is for the scratch baseline; add --from-scratch.")

    return run_command(build_parser(dataset), lambda args: run(dataset, flags_from(CaltechOptions, args)), argv, checks=checks)


def run_module(dataset):
    sys.exit(main(dataset))
