"""`python -m kzoo.evaluate`: a trained classifier's top-1/top-5 error under a paper protocol.

    python -m kzoo.evaluate --run-dir runs/alexnet-alexnet-digits --protocol 10crop
    python -m kzoo.evaluate --run-dir RUN1 RUN2 RUN3 --protocol 10crop     # an ensemble
    python -m kzoo.evaluate --model overfeat_accurate --weights W.weights.h5 \\
        --dataset imagenet2012 --data-dir DIR --protocol dense

Protocols: center (one centre view), 10crop (AlexNet §4.1), dense (OverFeat's
offset-pooled maps over Table 5's 6 input sizes, with flips), dense-single (the
same at Table 5's scale 1 only), multiscale (ResNet's fully convolutional test
over shorter sides 224-640). The result names the views and their sizes. A run
directory brings the model, its weights, its preprocessing and the training set's
mean (kzoo.load); with --model, registered --weights bring theirs, a weights file
needs --mean R G B.

Several runs after --run-dir are an ensemble (AlexNet §6, ZFNet Table 1, ResNet §4.1): each
run scores the images with its own preprocessing (input size, resize, mean) under the
protocol, the scores are averaged, and the result gives the ensemble's top-1/top-5 error
with each run's own beside it ("ensemble", "members" in the JSON). The runs must share
their classes; without --dataset/--data-dir, also their dataset.
"""

import argparse
import dataclasses
import json
import os
import sys

import kzoo
from kzoo.evaluate.protocols import PROTOCOLS
from kzoo.inference import load
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_flags, flags_from, float_between,
                            folder, model_weights, option, positive_int, run_command)
from kzoo.utils.files import atomic_write
from kzoo.utils.precision import PRECISIONS


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """One evaluation, typed: each flag of `python -m kzoo.evaluate` declared once (its help,
    rule and default; `check_flags` applies the rules to EvaluateOptions built in Python)."""

    run_dir: list = option(nargs="+", metavar="RUN", rule=folder, help="a training run (model, weights, mean); "
                           "several: their ensemble (scores averaged, each run with its own preprocessing)")
    model: str = option(help="a registered model name (with --weights)")
    weights: str = option(help="weights for --model: a .weights.h5 file or a weights name; none: random weights "
                          "(said explicitly)")
    dataset: str = option(help="tfds name; default: a run's own built-in data, else the digits")
    data_dir: str = option(rule=folder, help="tfds data_dir, or a folder of class sub-folders")
    protocol: str = option("center", choices=PROTOCOLS,
                           help="the test views: center (one crop), 10crop (AlexNet's corners, centre and flips), "
                                "dense / dense-single (OverFeat's offset-pooled maps at six scales / one), multiscale "
                                "(ResNet's fully convolutional scores at five sizes); default: %(default)s")
    mean: list = option(rule=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects (registered weights and runs bring theirs)")
    limit: int = option(rule=positive_int, help="evaluate the first N validation images only")
    precision: str = option(choices=PRECISIONS, help="the precision the model computes in (default: a run's own, "
                            "else float32)")
    json: str = option(metavar="PATH", help="also write the result (errors, views and their sizes) to this JSON file")
    overwrite: bool = option(False, help="replace the --json file if it exists")

    def __post_init__(self):
        check_flags(self)


def main(argv=None):
    parser = ArgumentParser(prog="python -m kzoo.evaluate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, EvaluateOptions)
    add_verbose_flag(parser)
    return run_command(parser, lambda args: _main(flags_from(EvaluateOptions, args)), argv, checks=_check_flags)


def _check_flags(parser, args):
    if args.overwrite and not args.json:
        parser.error("--overwrite replaces a --json file; give --json PATH, or leave --overwrite out.")


def _main(options):
    if options.json:
        _check_output(options.json, options.overwrite)
    result = run(options)
    ensemble = f", ensemble of {result['ensemble']} models" if "ensemble" in result else ""
    print(f"{result['protocol']}: {result['images']} images{ensemble}, top-1 error {result['top1_err']:.2%}, "
          f"top-5 error {result['top5_err']:.2%}")
    for n, member in enumerate(result.get("members", []), 1):
        print(f"  member {n}, run {member['run_dir']}: top-1 error {member['top1_err']:.2%}, "
              f"top-5 error {member['top5_err']:.2%}")
    print(json.dumps(result))
    if options.json:
        with atomic_write(options.json) as f:
            json.dump(result, f, indent=2)
            f.write("\n")


def _check_output(path, overwrite):
    """Refuse, before evaluating, a --json path that cannot be written or would replace a file unasked."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--json {path!r} is a directory; name the file to write.")
    if not os.path.isdir(folder):
        raise ValueError(f"--json {path!r}: the folder {folder!r} does not exist; create it or choose another path.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"--json {path!r} already exists; pass --overwrite to replace it, or choose another path.")


def run(options):
    """The result of `options` (EvaluateOptions): errors, the views and their sizes."""
    sources = kzoo.data.sources  # TensorFlow: after the arguments are parsed
    runs = options.run_dir or []
    if len(runs) > 1 and options.model:
        raise ValueError(f"--model evaluates one model; the ensemble --run-dir {' '.join(runs)} takes each run's own "
                         f"model, weights and mean: drop --model (and --weights).")
    if bool(runs) == bool(options.model):
        raise ValueError("give either --run-dir (a training run) or --model NAME --weights PATH.")
    if runs and (options.weights or options.mean):
        flag = "--weights" if options.weights else "--mean"
        raise ValueError(f"{flag} goes with --model; --run-dir {' '.join(runs)} brings its own weights and mean.")
    _check_distinct(runs)
    dataset = options.dataset
    if runs:
        members = [load(run_dir=run_dir, dtype=options.precision) for run_dir in runs]
        kzoo.evaluate.views.check_ensemble(members)
        if not (options.dataset or options.data_dir):  # the (first) run's own data is the default
            dataset = _own_dataset(runs, members)
        source = sources.load_source(dataset, options.data_dir)
    else:
        weights = model_weights(options.model, options.weights)
        source = sources.load_source(dataset, options.data_dir)
        members = [load(options.model, weights=weights, classes=source.classes, mean=options.mean,
                        dtype=options.precision)]
    for trained in members:
        _check_classes(source, trained.model)
        kzoo.data.shards.check_protocol(source, trained.preprocessing, options.protocol)
    val = source.val.take(options.limit) if options.limit else source.val
    labels = []

    def images():  # streamed: a validation set need not fit in memory
        with sources.naming_bad_images(source):
            for image, label in val:
                labels.append(int(label))
                yield image.numpy()

    total = int(val.cardinality()) if val.cardinality() >= 0 else None
    views = kzoo.evaluate.views
    if len(members) == 1:
        result = views.evaluate(members[0], images(), labels, options.protocol, progress=True, total=total)
        return {**result, "precision": members[0].precision}
    result = views.evaluate_ensemble(members, images(), labels, options.protocol, progress=True, total=total)
    result["members"] = [{"run_dir": run_dir, **member, "precision": trained.precision}
                         for run_dir, member, trained in zip(runs, result["members"], members)]
    return result


def _check_distinct(runs):
    """The same run twice (or under two paths) would count one model twice in the average."""
    paths = [os.path.realpath(run_dir) for run_dir in runs]
    for n, path in enumerate(paths):
        if path in paths[:n]:
            first = runs[paths.index(path)]
            given = "" if first == runs[n] else f" (as {first!r} and {runs[n]!r})"
            raise ValueError(f"--run-dir gives the run {runs[n]!r} twice{given}: an ensemble averages different "
                             f"models; drop one.")


def _own_dataset(runs, members):
    """The built-in dataset the runs were trained on: the first run's, which the others share."""
    first = members[0]
    for run_dir, trained in zip(runs[1:], members[1:]):
        if trained.dataset != first.dataset:
            raise ValueError(f"run {run_dir} was trained on {trained.dataset!r} but run {runs[0]} on "
                             f"{first.dataset!r}: an ensemble is evaluated on one validation set; say which with "
                             f"--dataset NAME (and --data-dir DIR).")
    if first.dataset not in kzoo.data.sources.BUILTIN:
        raise ValueError(f"run {runs[0]} was trained on {first.dataset!r}; say where its "
                         f"validation images are: --dataset {first.dataset} --data-dir DIR (or "
                         f"--data-dir FOLDER of class sub-folders).")
    return first.dataset


def _check_classes(source, model):
    # As the training engine's label check; a different count also means other label ids.
    classes = model.outputs[0].shape[-1]
    if source.classes != classes:
        raise ValueError(
            f"dataset {source.name!r} has {source.classes} classes ({', '.join(source.class_names[:5])}, ...) "
            f"but the model has classes={classes}: its scores would be read against other labels. Evaluate on "
            f"the data the model was trained for (--dataset / --data-dir).")


if __name__ == "__main__":
    sys.exit(main())
