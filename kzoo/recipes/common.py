"""What every training recipe shares: the Recipe record, its command line, the run.

A recipe module states its paper's hyperparameters once, as a `Recipe`, each
with the section it comes from, and calls `main(recipe)`. `train_recipe(recipe, Run(...))`
is the plain function behind the command line: a `Run` holds one typed field per flag
(tests, the tuner and the ablation command build it directly).
"""

import dataclasses
import functools
import inspect
import os
import sys
from typing import Callable

import kzoo
from kzoo import registry
from kzoo.preprocessing import CROPS, Preprocess
from kzoo.utils.precision import PRECISIONS
from kzoo.utils.cli import (ArgumentParser, add_flags, add_option_flag, add_verbose_flag, check_flags, check_input_size,
                            check_model_options, flags_from, float_between, folder, option_fields,
                            non_negative_float, non_negative_int, option, options_dict, positive_int, run_command)

SMOKE = dict(epochs=1, steps_per_epoch=2, val_steps=1, batch_size=8)
LOG_EVERY = 100  # steps.csv: a row every 100 steps (ResNet's CIFAR runs: 640 points over 64k iterations)
DEMO_LOG_EVERY = 5  # the demo's epochs are ~22 steps: a few points each
EVOLUTION_IMAGES = 10_000  # --evolution's search: all the digits, 1/5 of CIFAR-10, 0.8% of ImageNet
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    paper: str
    dataset: str  # the paper's training data (a tensorflow-datasets name)
    model: Callable  # (**the recipe's own flags) -> (registry name, builder options); no arguments: the default
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
    flags: type = None  # the recipe's own flags (a dataclass of `option` fields); those named like `model`'s
    # parameters choose the model, and give it their defaults
    flag_groups: dict = dataclasses.field(default_factory=dict)  # an option's group -> its heading in --help
    decay_biases: bool = True


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a recipe, typed: each field that is a flag is declared here once
    (`option`: its default, help and rule; the parser and the checks of a Run built in Python
    come from it), and the model: a registry name (None: the recipe's default) with the
    builder's paper options (`--option`), e.g. `Run(model="resnet20", options={"shortcut": "B"}, epochs=3)`."""

    model: str = None
    options: dict = dataclasses.field(default_factory=dict)
    split_seed: int = None  # seed of --val-split's held-out images; None: `seed` (a seed study's rows share the base's)
    dataset: str = option(group="data", help="tensorflow-datasets name (imagenet2012, imagenette, caltech101, "
                          "cifar10, ...); default: the built-in digits, or --data-dir's class folders")
    data_dir: str = option(group="data", rule=folder, help="tfds data_dir for --dataset, or a folder of class "
                           "sub-folders (optionally train/ and val/) when --dataset is not given")
    download: bool = option(False, group="data", help="let tfds download and prepare --dataset")
    pca_std: float = option(group="data", rule=non_negative_float, metavar="S",
                            help="std of AlexNet §4.1's PCA colour noise, 0 for none (default: the recipe's, "
                                 "{pca:g}); recorded in the run's config")
    crops: str = option(group="data", choices=CROPS,
                        help="where training crops are cut: anywhere (random), or ZFNet §3's ten fixed sub-crops "
                             "(ten: the 4 corners and the centre, with flips; one at random per image and pass) "
                             "(default: the recipe's, {crops}); recorded in the run's config, and a run resumes "
                             "only with the crops it started with")
    val_split: int = option(group="data", rule=positive_int, metavar="N",
                            help="hold out N training images (the same ones for the same --seed) as the validation "
                                 "set and train on the rest, leaving the data's own validation or test set unused "
                                 "(ResNet §4.2's 45k/5k split for tuning: --val-split 5000 on cifar10); recorded in "
                                 "the run's config and identity")
    run_dir: str = option(group="run", rule=folder, help="where checkpoints, logs and curves go; rerunning the same "
                          "command resumes there (default runs/<recipe>-<model>-<dataset>)")
    epochs: int = option(group="run", rule=positive_int, help="stop after this many epochs (default: the paper's)")
    batch_size: int = option(group="run", rule=positive_int, help="global batch over all replicas (default: the "
                             "paper's); the learning rate scales linearly with it")
    input_size: int = option(group="run", rule=positive_int, help="model input (crop) size, at least the model's "
                             "minimum; default: the paper's, or the demo size on the built-in data")
    strategy: str = option("default", group="run", choices=STRATEGIES,
                           help="one device, all local GPUs (MirroredStrategy), or several machines "
                                "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG)")
    seed: int = option(0, group="run", rule=non_negative_int, help="seed for initialization, shuffling, augmentation")
    checkpoint_every: int = option(0, group="run", rule=non_negative_int,
                                   help="also checkpoint every N steps (0: at epoch ends only)")
    log_every: int = option(group="run", rule=non_negative_int,
                            help=f"write the training error over the last N steps to RUN/steps.csv every N steps "
                                 f"(default {LOG_EVERY}; {DEMO_LOG_EVERY} on the built-in digits; 0: off)")
    target_error: float = option(0.25, group="run", rule=float_between(0, 1),
                                 help="metrics.json's first_step_below: the first step and epoch whose training "
                                      "error is below this (default 0.25, AlexNet's Fig. 1)")
    steps_per_epoch: int = option(group="run", rule=positive_int, help="limit each epoch to N steps")
    xla: bool = option(False, group="run", help="compile the train step with XLA")
    precision: str = option(group="run", choices=PRECISIONS,
                            help="the Keras dtype policy the model computes in: mixed_bfloat16 on AMX CPUs and "
                                 "A100/H100 GPUs, mixed_float16 (loss-scaled) on older GPUs (default: float32, or "
                                 "the precision the run directory's run trains in); recorded in the run's config, "
                                 "and a run resumes only in its own")
    mixed_precision: bool = option(False, group="run", help="the same as --precision mixed_float16 (GPUs)")
    evolution: bool = option(False, group="run",
                             help="record ZFNet's Fig. 4 in RUN/evolution.png: a block per layer (relu1..relu5; a "
                                  "ResNet's stage outputs), for 4 random feature maps each the deconvnet projection "
                                  "of its strongest activation over the training images at epochs 1, 2, 5, 10, 20, "
                                  "30, 40, 64")
    evolution_images: int = option(EVOLUTION_IMAGES, group="run", rule=non_negative_int, metavar="N",
                                   help=f"--evolution searches the first N training images (centre views) at each "
                                        f"of those epochs, one forward pass over them each time (default "
                                        f"{EVOLUTION_IMAGES}; 0: all)")
    smoke: bool = option(False, group="run", help="a few steps, seconds long: checks the set-up")

    def __post_init__(self):
        check_flags(self)
        if self.split_seed is not None:
            object.__setattr__(self, "split_seed", non_negative_int.check(self.split_seed, "--split-seed"))
        if not isinstance(self.options, dict):
            raise ValueError(f"argument --option: expected a dict of the builder's options, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))  # a copy: the run's own
        if self.mixed_precision and self.precision not in (None, "mixed_float16"):
            raise ValueError(f"argument --mixed-precision: it means --precision mixed_float16, and --precision "
                             f"{self.precision} is given too: keep one of them.")
        if self.mixed_precision:
            object.__setattr__(self, "precision", "mixed_float16")
        if self.model is not None:
            check_input_size(self.input_size, [self.model])  # also refuses an unknown model name
            check_model_options(self.model, self.options)


def resolve_run(recipe, run):
    """`run` with its model named: None becomes the recipe's default model, whose options
    go under the run's."""
    if run.model is not None:
        return run
    name, options = recipe.model(**model_flags(recipe))
    return dataclasses.replace(run, model=name, options={**options, **run.options})


def run_from_args(recipe, args):
    """The parsed command line as a `Run`: the recipe's own flags choose the model through
    `recipe.model`, and --option's pairs go over the options it sets."""
    flags, defaults = model_flags(recipe, args), model_flags(recipe)
    given = options_dict(args.option)
    both = [key for key in given if key in flags and flags[key] not in (None, False, defaults[key])]
    if both:
        flag = "--" + both[0].replace("_", "-")
        raise ValueError(f"{flag} {flags[both[0]]} and --option {both[0]}={given[both[0]]} both set {both[0]}; give "
                         f"one of them.")
    name, options = recipe.model(**flags)
    return flags_from(Run, args, model=name, options={**options, **given})


def model_flags(recipe, args=None):
    """{name: value} of the recipe's flags that choose its model (`recipe.model`'s parameters),
    from the parsed command line `args`, else their declared defaults."""
    declared = {f.name: f.default for f in option_fields(recipe.flags)} if recipe.flags else {}
    return {name: getattr(args, name) if args is not None else declared[name]
            for name in inspect.signature(recipe.model).parameters}


def describe(recipe, model_name, options=None, pca_std=None, crops=None):
    p = recipe.preprocess if pca_std is None else dataclasses.replace(recipe.preprocess, pca=pca_std)
    p = p if crops is None else dataclasses.replace(p, crops=crops)
    rows = [
        ("model", model_name + (f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else "")),
        ("batch size", recipe.batch_size),
        ("epochs (at most)", recipe.epochs),
        ("learning rate", recipe.schedule(model_name).describe()),
        ("momentum", recipe.momentum),
        ("weight decay (coupled L2)", f"{recipe.weight_decay:g}" + ("" if recipe.decay_biases else ", not on biases")),
        ("preprocessing", f"shorter side {p.resize}" + (f", centre {p.center}" if p.center else "")
         + (f", pad {p.pad}" if p.pad else "")
         + (f", random {p.crop} crops" if p.crops == "random" else f", {p.crop} corner and centre crops (ten)")
         + (", flips" if p.flip else "")
         + (f", PCA colour noise std {p.pca}" if p.pca else "") + f", {p.mean} mean subtracted"),
    ]
    lines = [f"{recipe.name} recipe ({recipe.paper})"]
    for key, value in rows:
        where = recipe.sections.get(key.split(" (")[0], "")
        lines.append(f"  {key:28s} {value}" + (f"   [{where}]" if where else ""))
    return "\n".join(lines)


def build_parser(recipe):
    parser = ArgumentParser(
        prog=f"python -m kzoo.recipes.{recipe.name}",
        description=f"Train with the schedule of {recipe.paper}. With no arguments: a few-minute demo "
                    f"on the built-in handwritten digits (scikit-learn), at a reduced input size.",
    )
    if recipe.flags:
        groups = {key: parser.add_argument_group(title) for key, title in recipe.flag_groups.items()}
        add_flags(parser, recipe.flags, groups)
    add_option_flag(parser, "towers=1, lrn=false, shortcut=A, remove_layers=3,4; recorded in the run's config")
    groups = {"data": parser.add_argument_group("data"), "run": parser.add_argument_group("run")}
    add_flags(parser, Run, groups, context={"pca": recipe.preprocess.pca, "crops": recipe.preprocess.crops})
    groups["run"].add_argument("--print-schedule", action="store_true", help="print the paper's schedule and exit")
    add_verbose_flag(groups["run"])
    return parser


def recipe_preprocess(recipe, model_name, demo, input_size=None):
    """The recipe's pipeline for this model: on the demo data the whole pipeline shrinks
    with the input; otherwise the paper's resizing with the model's input as crop
    (OverFeat accurate: 221)."""
    if demo:
        return recipe.preprocess.scaled(_given(input_size, recipe.demo_crop))
    return dataclasses.replace(recipe.preprocess, crop=_given(input_size, registry.get_entry(model_name).default_size))


def _given(*values):
    """The first value that is not None: a 0 the user gave is not replaced by a default."""
    return next((v for v in values if v is not None), None)


def _check_run_dir_outside_data(run_dir, data_dir):
    """A run directory inside the data folder would be read as a class of images next time."""
    if data_dir is None:
        return
    data, run_path = os.path.realpath(data_dir), os.path.realpath(run_dir)
    if os.path.commonpath([data, run_path]) == data:
        raise ValueError(f"the run directory {run_dir!r} lies inside --data-dir {data_dir!r}: its files would be "
                         f"read as a class of images. Pick a --run-dir outside the data folder.")


def run_dir_for(recipe, run, source):
    return run.run_dir or os.path.join("runs", f"{recipe.name}-{resolve_run(recipe, run).model}-{source.name}"
                                       + (f"-val{run.val_split}" if run.val_split else "")
                                       + ("-smoke" if run.smoke else ""))


def train_recipe(recipe, run, source=None):
    """Train `recipe` as `run` (a `Run`) says, on `source` (default: the data `run` names);
    returns the final metrics dict."""
    run = resolve_run(recipe, run)
    kzoo.train.strategies.get_strategy(run.strategy)  # before any dataset: multi-worker set-up must come first
    check_model_options(run.model, run.options, build=True)  # before the data and the run directory
    source = source or kzoo.data.sources.load_source(run.dataset, run.data_dir, run.download, seed=run.seed)
    _check_run_dir_outside_data(run_dir_for(recipe, run, source), run.data_dir)
    if run.val_split:  # before the run directory: a too large N is refused first
        source = kzoo.data.sources.hold_out(source, run.val_split, _given(run.split_seed, run.seed))
        print(f"Validating on {run.val_split} held-out training images of {source.name} (--val-split); "
              f"training on the other {source.train_size}.")
    demo = source.builtin
    if demo:
        print(f"Training on the built-in demo data: {source.description}, resized to "
              f"{_given(run.input_size, recipe.demo_crop)}px"
              + (f", with {recipe.demo_options}" if recipe.demo_options else "") + ". " + paper_data_hint(recipe))
    config = recipe_config(recipe, run, source)
    if not demo:
        print(f"Training on {source.name}: {source.train_size:,} training and {source.val_size:,} validation images, "
              f"{source.classes} classes, at {config.preprocess.crop} px.")
    _check_resumed_pca(config)
    run_dir = config.run_dir
    callbacks = []
    if run.evolution:
        images = functools.partial(kzoo.train.engine.training_images, config, source, run.evolution_images or None)
        callbacks.append(kzoo.visualize.top9.FeatureEvolution(images, None, os.path.join(run_dir, "evolution.png"),
                                                              seed=run.seed))
    metrics, _ = kzoo.train.engine.train(config, source, callbacks=callbacks)
    where = (f"{run.val_split} held-out training images of {source.name}" if run.val_split else
             f"{source.name} validation")
    print(f"Done: top-1 error {metrics.get('val_top1_err', float('nan')):.2%}, top-5 error "
          f"{metrics.get('val_top5_err', float('nan')):.2%} on {where}. Run directory: {run_dir}")
    print(f"Next: python -m kzoo.evaluate --run-dir {run_dir} (the papers' test views); python -m kzoo.predict "
          f"IMAGE --run-dir {run_dir}; python -m kzoo.visualize curves {run_dir}")
    if demo:
        print(paper_data_hint(recipe))
    return metrics


def recipe_config(recipe, run, source):
    """The engine's TrainConfig for `run` on `source`: the paper's numbers, or the demo's on
    the built-in data (the recipe's demo options go under the run's own)."""
    run = resolve_run(recipe, run)
    demo = source.builtin
    options = {**recipe.demo_options, **run.options} if demo else run.options
    preprocess = recipe_preprocess(recipe, run.model, demo, run.input_size)
    if run.pca_std is not None:
        preprocess = dataclasses.replace(preprocess, pca=run.pca_std)
    if run.crops is not None:
        preprocess = dataclasses.replace(preprocess, crops=run.crops)
    limits = SMOKE if run.smoke else {}
    batch = _given(run.batch_size, limits.get("batch_size"), recipe.demo_batch if demo else recipe.batch_size)
    epochs = _given(run.epochs, limits.get("epochs"), recipe.demo_epochs if demo else recipe.epochs)
    engine = kzoo.train.engine
    # A Run field the engine takes as it is (seed, strategy, checkpoint_every, target_error, xla,
    # precision, split_seed) passes by its name: an option is written in Run and TrainConfig only.
    passed = {f.name: getattr(run, f.name) for f in dataclasses.fields(engine.TrainConfig)
              if f.name in {g.name for g in dataclasses.fields(Run)}}
    return engine.TrainConfig(**{
        **passed,
        "model_options": options,
        "schedule": recipe.schedule(run.model),
        "preprocess": preprocess,
        "run_dir": run_dir_for(recipe, run, source),
        "batch_size": batch,
        "paper_batch": recipe.batch_size,
        "epochs": epochs,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "decay_biases": recipe.decay_biases,
        "steps_per_epoch": _given(run.steps_per_epoch, limits.get("steps_per_epoch")),
        "val_steps": limits.get("val_steps"),
        "log_every": _given(run.log_every, DEMO_LOG_EVERY if demo else LOG_EVERY),
        "val_split": run.val_split or 0,
    })


def _check_resumed_pca(config):
    """The colour noise is not part of a run's identity (runs started before --pca-std resume
    as they are), but a resumed run keeps the noise its config.json records."""
    path = os.path.join(config.run_dir, "config.json")
    previous = kzoo.train.checkpoints.read_json(path) if os.path.isfile(path) else None  # else the engine says why
    pca = ((previous or {}).get("config") or {}).get("preprocess", {}).get("pca")
    if pca is not None and pca != config.preprocess.pca:
        raise ValueError(f"run directory {config.run_dir!r} trains with --pca-std {pca:g} (its config.json); this "
                         f"command gives {config.preprocess.pca:g}. Rerun with --pca-std {pca:g} to resume it, "
                         f"or pick a new --run-dir.")


def paper_data_hint(recipe):
    return (f"For the paper's data use --dataset {recipe.dataset} --data-dir DIR (tensorflow-datasets; "
            f"--download lets it prepare the data), or --data-dir a folder of class sub-folders.")


def main(recipe, argv=None):
    return run_command(build_parser(recipe), lambda args: run_recipe(recipe, args), argv,
                       checks=lambda parser, args: check_recipe_flags(parser, args, recipe))


def run_recipe(recipe, args):
    """The recipe's command line, parsed: print its schedule, or train."""
    run = run_from_args(recipe, args)  # what the parser's types cannot check: the model's own limits
    if args.print_schedule:
        print(describe(recipe, run.model, run.options, run.pca_std, run.crops))
        return
    train_recipe(recipe, run)


def check_recipe_flags(parser, args, recipe):
    """Flags another flag makes void: refused, not ignored."""
    if "evolution_images" in parser.given and not args.evolution:
        parser.error("--evolution-images goes with --evolution (the figure it sizes); add --evolution or leave "
                     "it out.")
    if args.print_schedule:  # prints the schedule of the model these flags choose; trains nothing
        shown = {*model_flags(recipe), "option", "pca_std", "crops", "print_schedule",
                 "verbose", "help"}
        void = [action.option_strings[-1] for action in parser._actions if action.option_strings
                and action.dest not in shown and action.dest in parser.given]
        if void:
            parser.error(f"--print-schedule prints the paper's schedule and trains nothing: {', '.join(void)} "
                         f"would be ignored; leave {'it' if len(void) == 1 else 'them'} out.")


def run_module(recipe):
    sys.exit(main(recipe))
