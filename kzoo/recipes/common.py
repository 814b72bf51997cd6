"""What every training recipe shares: the Recipe record, its command line, the run.

A recipe module states its paper's hyperparameters once, as a `Recipe`, each
with the section it comes from, and calls `main(recipe)`. `train_recipe` is the
plain function behind the command line (tests call it directly).
"""

import argparse
import dataclasses
import os
import sys
from typing import Callable

from kzoo.preprocessing import Preprocess
from kzoo.utils.cli import add_verbose_flag, check_input_size, non_negative_int, positive_int, quiet_tensorflow

SMOKE = dict(epochs=1, steps_per_epoch=2, val_steps=1, batch_size=8)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    paper: str
    dataset: str  # the paper's training data (a tensorflow-datasets name)
    model: Callable  # (args namespace) -> (registry name, model options)
    batch_size: int
    epochs: int
    momentum: float
    weight_decay: float
    schedule: Callable  # (model name) -> a fresh Schedule
    preprocess: Preprocess
    sections: dict  # hyperparameter -> where the paper states it (or why we chose it)
    demo_crop: int  # model input on the built-in digits
    demo_epochs: int = 10
    demo_batch: int = 64
    demo_options: dict = dataclasses.field(default_factory=dict)  # model options for the demo only
    add_arguments: Callable = None  # recipe-specific flags
    decay_biases: bool = True


def describe(recipe, model_name):
    p = recipe.preprocess
    rows = [
        ("model", model_name),
        ("batch size", recipe.batch_size),
        ("epochs (at most)", recipe.epochs),
        ("learning rate", recipe.schedule(model_name).describe()),
        ("momentum", recipe.momentum),
        ("weight decay (coupled L2)", f"{recipe.weight_decay:g}" + ("" if recipe.decay_biases else ", not on biases")),
        ("preprocessing", f"shorter side {p.resize}" + (f", centre {p.center}" if p.center else "")
         + (f", pad {p.pad}" if p.pad else "") + f", random {p.crop} crops" + (", flips" if p.flip else "")
         + (f", PCA colour noise std {p.pca}" if p.pca else "") + f", {p.mean} mean subtracted"),
    ]
    lines = [f"{recipe.name} recipe ({recipe.paper})"]
    for key, value in rows:
        where = recipe.sections.get(key.split(" (")[0], "")
        lines.append(f"  {key:28s} {value}" + (f"   [{where}]" if where else ""))
    return "\n".join(lines)


def build_parser(recipe):
    parser = argparse.ArgumentParser(
        prog=f"python -m kzoo.recipes.{recipe.name}",
        description=f"Train with the schedule of {recipe.paper}. With no arguments: a few-minute demo "
                    f"on the built-in handwritten digits (scikit-learn), at a reduced input size.",
    )
    if recipe.add_arguments:
        recipe.add_arguments(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="tensorflow-datasets name (imagenet2012, imagenette, caltech101, "
                      "cifar10, ...); default: the built-in digits, or --data-dir's class folders")
    data.add_argument("--data-dir", help="tfds data_dir for --dataset, or a folder of class sub-folders "
                      "(optionally train/ and val/) when --dataset is not given")
    data.add_argument("--download", action="store_true", help="let tfds download and prepare --dataset")
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", help="where checkpoints, logs and curves go; rerunning the same "
                     "command resumes there (default runs/<recipe>-<model>-<dataset>)")
    run.add_argument("--epochs", type=positive_int, help="stop after this many epochs (default: the paper's)")
    run.add_argument("--batch-size", type=positive_int, help="global batch over all replicas (default: the paper's); "
                     "the learning rate scales linearly with it")
    run.add_argument("--input-size", type=positive_int, help="model input (crop) size, at least the model's "
                     "minimum; default: the paper's, or the demo size on the built-in data")
    run.add_argument("--strategy", default="default", choices=("default", "mirrored", "multiworker"),
                     help="one device, all local GPUs (MirroredStrategy), or several machines "
                          "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG)")
    run.add_argument("--seed", type=non_negative_int, default=0, help="seed for initialization, shuffling, augmentation")
    run.add_argument("--checkpoint-every", type=non_negative_int, default=0,
                     help="also checkpoint every N steps (0: at epoch ends only)")
    run.add_argument("--steps-per-epoch", type=positive_int, help="limit each epoch to N steps")
    run.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    run.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPUs)")
    run.add_argument("--evolution", action="store_true",
                     help="record ZFNet's Fig. 4 (projections of the strongest layer-5 activations on 16 "
                          "validation images at epochs 1, 2, 5, 10, 20, 30, 40, 64) in RUN/evolution.png")
    run.add_argument("--smoke", action="store_true", help="a few steps, seconds long: checks the set-up")
    run.add_argument("--print-schedule", action="store_true", help="print the paper's schedule and exit")
    add_verbose_flag(run)
    return parser


def recipe_preprocess(recipe, model_name, demo, input_size=None):
    """The recipe's pipeline for this model: on the demo data the whole pipeline shrinks
    with the input; otherwise the paper's resizing with the model's input as crop
    (OverFeat accurate: 221)."""
    from kzoo import registry

    if demo:
        return recipe.preprocess.scaled(_given(input_size, recipe.demo_crop))
    return dataclasses.replace(recipe.preprocess, crop=_given(input_size, registry.get_entry(model_name).default_size))


def _given(*values):
    """The first value that is not None: a 0 the user gave is not replaced by a default."""
    return next((v for v in values if v is not None), None)


def run_dir_for(recipe, args, model_name, source):
    return args.run_dir or os.path.join("runs", f"{recipe.name}-{model_name}-{source.name}"
                                        + ("-smoke" if args.smoke else ""))


def train_recipe(recipe, args, source=None):
    """Run `recipe` with parsed `args` (on `source`, default: the one the flags name);
    returns the final metrics dict."""
    from kzoo.data.sources import load_source
    from kzoo.train.engine import TrainConfig, train
    from kzoo.train.strategies import get_strategy

    model_name, options = recipe.model(args)
    get_strategy(args.strategy)  # before any dataset: multi-worker set-up must come first
    source = source or load_source(args.dataset, args.data_dir, args.download, seed=args.seed)
    demo = source.builtin
    if demo:
        options = {**recipe.demo_options, **options}
        print(f"Training on the built-in demo data: {source.description}, resized to "
              f"{_given(args.input_size, recipe.demo_crop)}px"
              + (f", with {recipe.demo_options}" if recipe.demo_options else "") + ". " + paper_data_hint(recipe))
    preprocess = recipe_preprocess(recipe, model_name, demo, args.input_size)
    limits = SMOKE if args.smoke else {}
    batch = _given(args.batch_size, limits.get("batch_size"), recipe.demo_batch if demo else recipe.batch_size)
    epochs = _given(args.epochs, limits.get("epochs"), recipe.demo_epochs if demo else recipe.epochs)
    run_dir = run_dir_for(recipe, args, model_name, source)
    config = TrainConfig(
        model=model_name,
        model_options=options,
        schedule=recipe.schedule(model_name),
        preprocess=preprocess,
        run_dir=run_dir,
        batch_size=batch,
        paper_batch=recipe.batch_size,
        epochs=epochs,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        decay_biases=recipe.decay_biases,
        seed=args.seed,
        strategy=args.strategy,
        steps_per_epoch=_given(args.steps_per_epoch, limits.get("steps_per_epoch")),
        val_steps=limits.get("val_steps"),
        checkpoint_every=args.checkpoint_every,
        xla=args.xla,
        mixed_precision=args.mixed_precision,
    )
    callbacks = []
    if args.evolution:
        from kzoo.train.engine import validation_images
        from kzoo.visualize.top9 import FeatureEvolution

        callbacks.append(FeatureEvolution(lambda: validation_images(config, source, 16), None,
                                          os.path.join(run_dir, "evolution.png")))
    metrics, _ = train(config, source, callbacks=callbacks)
    print(f"Done: top-1 error {metrics.get('val_top1_err', float('nan')):.2%}, top-5 error "
          f"{metrics.get('val_top5_err', float('nan')):.2%} on {source.name} validation. Run directory: {run_dir}")
    if demo:
        print(paper_data_hint(recipe))
    return metrics


def paper_data_hint(recipe):
    return (f"For the paper's data use --dataset {recipe.dataset} --data-dir DIR (tensorflow-datasets; "
            f"--download lets it prepare the data), or --data-dir a folder of class sub-folders.")


def check_arguments(recipe, args):
    """What the parser's types cannot check: the model's own limits. Returns the model name."""
    model_name = recipe.model(args)[0]
    check_input_size(args.input_size, [model_name])
    return model_name


def main(recipe, argv=None):
    parser = build_parser(recipe)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        model_name = check_arguments(recipe, args)
        if args.print_schedule:
            print(describe(recipe, model_name))
            return 0
        train_recipe(recipe, args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    return 0


def run_module(recipe):
    sys.exit(main(recipe))
