"""What the transfer recipes (caltech101, caltech256, voc2012) share: the flags naming
the trained network, and loading it with the preprocessing it was trained with."""

import os

import numpy as np

from kzoo import weights as weights_registry
from kzoo.inference import load, read_run_config
from kzoo.utils.cli import check_input_size, float_between, model_weights, positive_int


def add_model_flags(parser):
    parser.add_argument("--model", help="a registered classifier (with --weights)")
    parser.add_argument("--weights", help="its trained weights (.weights.h5, or a weights name); "
                        "none: random weights")
    parser.add_argument("--model-classes", type=positive_int, help="classes the weights were trained for "
                        "(default: the registry's, 1000 for ImageNet models)")
    parser.add_argument("--input-size", type=positive_int, help="input size --weights were trained at (default: the "
                        "model's paper size)")
    parser.add_argument("--run-dir", help="a kzoo training run instead: model, weights and mean")
    parser.add_argument("--mean", type=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour the weights expect (default: the run's, or the dataset's)")


def mean_colour(collection, count=500, seed=0):
    """The mean RGB of up to `count` random images of a Collection."""
    picks = np.random.default_rng(seed).permutation(len(collection.images))[:count]
    return np.mean([collection.read(i).reshape(-1, 3).mean(0) for i in picks], axis=0).astype(np.float32)


def check_model_flags(args):
    """Refuse contradictory flags before any data is read; returns --weights as the builders take it."""
    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --model NAME --weights PATH or --run-dir RUN.")
    if args.run_dir:
        given = [flag for flag, value in (("--weights", args.weights), ("--model-classes", args.model_classes),
                                          ("--input-size", args.input_size), ("--mean", args.mean))
                 if value is not None]
        if given:  # a run brings its own; ignoring them would transfer other weights than asked
            raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --model; "
                             f"--run-dir {args.run_dir} brings its own model, weights and mean.")
        read_run_config(args.run_dir)  # a missing or broken run is named before thousands of images are read
        return None
    weights = model_weights(args.model, args.weights)
    check_input_size(args.input_size, [args.model])
    return weights


def load_trained(args, dataset_mean):
    """(trained, identity, model options) of --run-dir or --model/--weights (kzoo.load).
    `dataset_mean()`: the mean colour that weights of unknown provenance see unless --mean
    says. `identity` names the weights, for the feature cache."""
    weights = check_model_flags(args)
    if args.run_dir:
        trained = load(run_dir=args.run_dir)
        latest = os.path.join(args.run_dir, "checkpoints", "latest.json")
        identity = [os.path.abspath(args.run_dir),  # the checkpoint: a run trained further gets new features
                    open(latest, encoding="utf-8").read() if os.path.exists(latest) else None]
        return trained, identity, trained.run_config["identity"]["model_options"]
    options = {"classes": args.model_classes} if args.model_classes else {}
    if args.input_size:
        options["input_shape"] = (args.input_size, args.input_size, 3)
    registered = weights in weights_registry.names(args.model)
    if registered and args.mean:
        raise ValueError(f"--mean: weights {args.model}/{weights} bring their own mean; drop --mean.")
    mean = None if registered else (args.mean if args.mean else dataset_mean())
    trained = load(args.model, weights=weights, mean=mean, **options)
    weights_file = weights and os.path.exists(weights)
    identity = [args.model, options, weights] + ([os.path.abspath(weights), os.path.getsize(
        weights), os.path.getmtime(weights)] if weights_file else [])
    return trained, identity, {}
