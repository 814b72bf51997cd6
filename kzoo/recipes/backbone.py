"""What the transfer recipes (caltech101, caltech256, voc2012) share: the flags naming
the trained network, and loading it with the preprocessing it was trained with."""

import dataclasses
import os

import numpy as np

from kzoo import weights as weights_registry
from kzoo.inference import load, read_run_config
from kzoo.utils.cli import check_flags, check_input_size, float_between, folder, model_weights, option, positive_int


@dataclasses.dataclass(frozen=True)
class Backbone:
    """The trained network a transfer recipe stands on, typed: each flag declared once (the
    recipes' options dataclasses extend it)."""

    model: str = option(help="a registered classifier (with --weights)")
    weights: str = option(help="its trained weights (.weights.h5, or a weights name); none: random weights")
    model_classes: int = option(rule=positive_int, help="classes the weights were trained for (default: the "
                                "registry's, 1000 for ImageNet models)")
    input_size: int = option(rule=positive_int, help="input size --weights were trained at (default: the model's "
                             "paper size)")
    run_dir: str = option(rule=folder, help="a kzoo training run instead: model, weights and mean")
    mean: list = option(rule=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour the weights expect (default: the run's, or the dataset's)")

    def __post_init__(self):
        check_flags(self)


def mean_colour(collection, count=500, seed=0):
    """The mean RGB of up to `count` random images of a Collection."""
    picks = np.random.default_rng(seed).permutation(len(collection.images))[:count]
    return np.mean([collection.read(i).reshape(-1, 3).mean(0) for i in picks], axis=0).astype(np.float32)


def check_model_flags(backbone):
    """Refuse contradictory flags of a `Backbone` before any data is read; returns --weights as
    the builders take it."""
    if bool(backbone.run_dir) == bool(backbone.model):
        raise ValueError("give either --model NAME --weights PATH or --run-dir RUN.")
    if backbone.run_dir:
        given = [flag for flag, value in (("--weights", backbone.weights), ("--model-classes", backbone.model_classes),
                                          ("--input-size", backbone.input_size), ("--mean", backbone.mean))
                 if value is not None]
        if given:  # a run brings its own; ignoring them would transfer other weights than asked
            raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --model; "
                             f"--run-dir {backbone.run_dir} brings its own model, weights and mean.")
        read_run_config(backbone.run_dir)  # a missing or broken run is named before thousands of images are read
        return None
    weights = model_weights(backbone.model, backbone.weights)
    check_input_size(backbone.input_size, [backbone.model])
    return weights


def load_trained(backbone, dataset_mean):
    """(trained, identity, model options) of a `Backbone`'s --run-dir or --model/--weights (kzoo.load).
    `dataset_mean()`: the mean colour that weights of unknown provenance see unless --mean
    says. `identity` names the weights, for the feature cache."""
    weights = check_model_flags(backbone)
    if backbone.run_dir:
        trained = load(run_dir=backbone.run_dir)
        latest = os.path.join(backbone.run_dir, "checkpoints", "latest.json")
        identity = [os.path.abspath(backbone.run_dir),  # the checkpoint: a run trained further gets new features
                    open(latest, encoding="utf-8").read() if os.path.exists(latest) else None]
        return trained, identity, trained.run_config["identity"]["model_options"]
    options = {"classes": backbone.model_classes} if backbone.model_classes else {}
    if backbone.input_size:
        options["input_shape"] = (backbone.input_size, backbone.input_size, 3)
    registered = weights in weights_registry.names(backbone.model)
    if registered and backbone.mean:
        raise ValueError(f"--mean: weights {backbone.model}/{weights} bring their own mean; drop --mean.")
    mean = None if registered else (backbone.mean if backbone.mean else dataset_mean())
    trained = load(backbone.model, weights=weights, mean=mean, **options)
    weights_file = weights and os.path.exists(weights)
    identity = [backbone.model, options, weights] + ([os.path.abspath(weights), os.path.getsize(
        weights), os.path.getmtime(weights)] if weights_file else [])
    return trained, identity, {}
