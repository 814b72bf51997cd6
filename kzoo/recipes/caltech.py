"""ZFNet's transfer protocol (§5.2-5.3) as a command; `caltech101` and `caltech256` run it.

    python -m kzoo.recipes.caltech101 --model zfnet --weights W.weights.h5 --data-dir DIR
    python -m kzoo.recipes.caltech101 --run-dir runs/zfnet-zfnet-imagenet2012 --data-dir DIR --per-layer svm
    python -m kzoo.recipes.caltech256 --model alexnet --weights W.weights.h5 --data-dir DIR --from-scratch
    python -m kzoo.recipes.caltech256 ... --data-dir DIR --exclude overlap.csv   # §5.2: without ImageNet's copies
    python -m kzoo.recipes.caltech256 ... --per-class 1 2 3 5 10 15 20 25 30 45 60  # Fig. 7: OUT/curve.png
"""

import argparse
import functools
import os
import sys

import kzoo
from kzoo import registry
from kzoo.data.caltech import DATASETS, load_collection
from kzoo.data.overlap import read_list
from kzoo.recipes.backbone import add_model_flags, check_model_flags, load_trained, mean_colour
from kzoo.utils.cli import ArgumentParser, add_verbose_flag, non_negative_int, positive_float, positive_int, run_command


def build_parser(dataset):
    spec = DATASETS[dataset]
    parser = ArgumentParser(
        prog=f"python -m kzoo.recipes.{dataset}", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(parser)
    parser.add_argument("--data-dir", required=True, help=f"the {spec['folder']} folder (or its parent)"
                        + (", or a tfds data_dir with caltech101 prepared" if dataset == "caltech101" else ""))
    parser.add_argument("--exclude", metavar="LIST", help="leave out the images LIST names (relative to the "
                        f"{spec['folder']} folder): `python -m kzoo.data.overlap --out` (§5.2's images found in "
                        "ImageNet), or one path a line")
    parser.add_argument("--per-class", type=positive_int, nargs="+", default=list(spec["per_class"]),
                        help=f"training images per class (default: {' '.join(map(str, spec['per_class']))}); "
                             f"several sizes also draw Fig. 7, accuracy against them, in OUT/curve.png")
    parser.add_argument("--test-max", type=positive_int, default=spec["test_max"],
                        help=f"test images per class at most (default {spec['test_max']})")
    parser.add_argument("--folds", type=positive_int, default=5, help="random train/test folds (default 5)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--background", action=argparse.BooleanOptionalAction, default=spec["with_background"],
                        help=f"keep the {spec['background']} class (default: "
                             f"{'kept' if spec['with_background'] else 'left out'}, as the paper's comparisons)")
    parser.add_argument("--layer", help="feature layer (default: the last hidden ReLU, relu7)")
    parser.add_argument("--C", type=positive_float, default=1.0, help="inverse L2 strength of the softmax (default 1)")
    parser.add_argument("--per-layer", choices=("svm", "softmax"),
                        help="also classify the features of every layer 1-7 (Table 6)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="also reset layers 1-7 and train everything on each fold (the paper's baseline)")
    parser.add_argument("--scratch-epochs", type=positive_int, default=30,
                        help="with --from-scratch: training epochs per fold (default 30)")
    parser.add_argument("--out", help=f"results folder (default runs/{dataset}-<model>)")
    add_verbose_flag(parser)
    return parser


def run(dataset, args):
    check_model_flags(args)  # before reading the images
    exclude = read_list(args.exclude) if args.exclude else None
    collection = load_collection(dataset, args.data_dir, args.background, exclude)
    print(f"{dataset}: {len(collection.images)} images in {len(collection.class_names)} classes"
          + (f" ({len(collection.excluded)} excluded, as {args.exclude} lists)." if args.exclude else "."))
    # weights of unknown provenance (a file, or none) see the dataset's mean colour unless told
    trained, identity, run_options = load_trained(args, lambda: mean_colour(collection, seed=args.seed))
    name = trained.name
    size = trained.input_size
    scratch_fn = functools.partial(registry.create_model, name, input_shape=(size, size, 3),
                                   classes=len(collection.class_names), **run_options) if args.from_scratch else None
    out = args.out or os.path.join("runs", f"{dataset}-{name}")
    results = kzoo.tasks.transfer.run_protocol(
        trained, collection, args.per_class, args.test_max, args.folds, args.seed, args.layer, args.C, out, identity,
        args.per_layer, scratch_fn, args.scratch_epochs)
    print(kzoo.tasks.transfer.results_table(results))
    curve = kzoo.tasks.transfer.write_curve(out, results, DATASETS[dataset]["paper"])  # Fig. 7: several sizes
    print(f"Results: {out}/results.json, {out}/results.md" + (f", {curve}" if curve else ""))
    return results


def main(dataset, argv=None):
    def checks(parser, args):
        if "scratch_epochs" in parser.given and not args.from_scratch:
            parser.error("--scratch-epochs is for the scratch baseline; add --from-scratch.")

    return run_command(build_parser(dataset), lambda args: run(dataset, args), argv, checks=checks)


def run_module(dataset):
    sys.exit(main(dataset))
