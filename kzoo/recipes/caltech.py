"""ZFNet's transfer protocol (§5.2-5.3) as a command; `caltech101` and `caltech256` run it.

    python -m kzoo.recipes.caltech101 --model zfnet --weights W.weights.h5 --data-dir DIR
    python -m kzoo.recipes.caltech101 --run-dir runs/zfnet-zfnet-imagenet2012 --data-dir DIR --per-layer svm
    python -m kzoo.recipes.caltech256 --model alexnet --weights W.weights.h5 --data-dir DIR --from-scratch
"""

import argparse
import functools
import os
import sys

import numpy as np

import kzoo
from kzoo import registry
from kzoo import weights as weights_registry
from kzoo.data.caltech import DATASETS, load_collection
from kzoo.inference import load
from kzoo.utils.cli import (add_verbose_flag, check_input_size, float_between, model_weights, non_negative_int,
                            positive_float, positive_int, quiet_tensorflow)


def build_parser(dataset):
    spec = DATASETS[dataset]
    parser = argparse.ArgumentParser(
        prog=f"python -m kzoo.recipes.{dataset}", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a registered classifier (with --weights)")
    parser.add_argument("--weights", help="its trained weights (.weights.h5, or a weights name); "
                        "none: random weights")
    parser.add_argument("--model-classes", type=positive_int, help="classes the weights were trained for "
                        "(default: the registry's, 1000 for ImageNet models)")
    parser.add_argument("--input-size", type=positive_int, help="input size --weights were trained at (default: the "
                        "model's paper size)")
    parser.add_argument("--run-dir", help="a kzoo training run instead: model, weights and mean")
    parser.add_argument("--data-dir", required=True, help=f"the {spec['folder']} folder (or its parent)"
                        + (", or a tfds data_dir with caltech101 prepared" if dataset == "caltech101" else ""))
    parser.add_argument("--per-class", type=positive_int, nargs="+", default=list(spec["per_class"]),
                        help=f"training images per class (default: {' '.join(map(str, spec['per_class']))})")
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
    parser.add_argument("--mean", type=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour the weights expect (default: the run's, or the dataset's)")
    parser.add_argument("--out", help=f"results folder (default runs/{dataset}-<model>)")
    add_verbose_flag(parser)
    return parser


def _mean_colour(collection, count=500, seed=0):
    picks = np.random.default_rng(seed).permutation(len(collection.images))[:count]
    return np.mean([collection.read(i).reshape(-1, 3).mean(0) for i in picks], axis=0).astype(np.float32)


def run(dataset, args):
    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --model NAME --weights PATH or --run-dir RUN.")
    if args.run_dir:
        given = [flag for flag, value in (("--weights", args.weights), ("--model-classes", args.model_classes),
                                          ("--input-size", args.input_size)) if value is not None]
        if given:  # a run brings its own; ignoring them would transfer other weights than asked
            raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --model; "
                             f"--run-dir {args.run_dir} brings its own model and weights.")
    else:
        weights = model_weights(args.model, args.weights)
        check_input_size(args.input_size, [args.model])
    collection = load_collection(dataset, args.data_dir, args.background)
    print(f"{dataset}: {len(collection.images)} images in {len(collection.class_names)} classes.")
    run_options = {}
    if args.run_dir:
        if args.mean:
            raise ValueError(f"--mean goes with --model; --run-dir {args.run_dir} brings its own mean.")
        trained = load(run_dir=args.run_dir)
        latest = os.path.join(args.run_dir, "checkpoints", "latest.json")
        identity = [os.path.abspath(args.run_dir),  # the checkpoint: a run trained further gets new features
                    open(latest, encoding="utf-8").read() if os.path.exists(latest) else None]
        run_options = trained.run_config["identity"]["model_options"]
    else:
        options = {"classes": args.model_classes} if args.model_classes else {}
        if args.input_size:
            options["input_shape"] = (args.input_size, args.input_size, 3)
        registered = weights in weights_registry.names(args.model)
        if registered and args.mean:
            raise ValueError(f"--mean: weights {args.model}/{weights} bring their own mean; drop --mean.")
        # Weights of unknown provenance (a file, or none) see the dataset's mean colour unless told.
        mean = None if registered else (args.mean if args.mean else _mean_colour(collection, seed=args.seed))
        trained = load(args.model, weights=weights, mean=mean, **options)
        weights_file = weights and os.path.exists(weights)
        identity = [args.model, options, weights] + ([os.path.abspath(weights), os.path.getsize(
            weights), os.path.getmtime(weights)] if weights_file else [])
    name = trained.name
    size = trained.input_size
    scratch_fn = functools.partial(registry.create_model, name, input_shape=(size, size, 3),
                                   classes=len(collection.class_names), **run_options) if args.from_scratch else None
    out = args.out or os.path.join("runs", f"{dataset}-{name}")
    results = kzoo.evaluate.transfer.run_protocol(
        trained, collection, args.per_class, args.test_max, args.folds, args.seed, args.layer, args.C, out, identity,
        args.per_layer, scratch_fn, args.scratch_epochs)
    print(kzoo.evaluate.transfer.results_table(results))
    print(f"Results: {out}/results.json, {out}/results.md")
    return results


def main(dataset, argv=None):
    parser = build_parser(dataset)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    if args.scratch_epochs != parser.get_default("scratch_epochs") and not args.from_scratch:
        parser.error("--scratch-epochs is for the scratch baseline; add --from-scratch.")
    try:
        run(dataset, args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    return 0


def run_module(dataset):
    sys.exit(main(dataset))
