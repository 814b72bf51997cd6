"""`python -m kzoo.evaluate`: a trained classifier's top-1/top-5 error under a paper protocol.

    python -m kzoo.evaluate --run-dir runs/alexnet-alexnet-digits --protocol 10crop
    python -m kzoo.evaluate --model overfeat_accurate --weights W.weights.h5 \\
        --dataset imagenet2012 --data-dir DIR --protocol dense

Protocols: center (one centre view), 10crop (AlexNet §4.1), dense (OverFeat's
offset-pooled maps over Table 5's 6 input sizes, with flips), dense-single (the
same at Table 5's scale 1 only), multiscale (ResNet's fully convolutional test
over shorter sides 224-640). The result names the views and their sizes. A run
directory brings the model, its weights, its preprocessing and the training set's
mean (kzoo.load); with --model, registered --weights bring theirs, a weights file
needs --mean R G B.
"""

import argparse
import json
import os
import sys

import kzoo
from kzoo.evaluate.protocols import PROTOCOLS
from kzoo.inference import load
from kzoo.utils.cli import add_verbose_flag, float_between, model_weights, positive_int, quiet_tensorflow
from kzoo.utils.files import atomic_write


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kzoo.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="a training run (model, weights, mean)")
    parser.add_argument("--model", help="a registered model name (with --weights)")
    parser.add_argument("--weights", help="weights for --model: a .weights.h5 file or a weights name; "
                        "none: random weights (said explicitly)")
    parser.add_argument("--dataset", help="tfds name; default: a run's own built-in data, else the digits")
    parser.add_argument("--data-dir", help="tfds data_dir, or a folder of class sub-folders")
    parser.add_argument("--protocol", default="center", choices=PROTOCOLS)
    parser.add_argument("--mean", type=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects (registered weights and runs bring theirs)")
    parser.add_argument("--limit", type=positive_int, help="evaluate the first N validation images only")
    parser.add_argument("--json", metavar="PATH", help="also write the result (errors, views and their sizes) "
                        "to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        if args.json:
            _check_output(args.json, args.overwrite)
        result = run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{result['protocol']}: {result['images']} images, top-1 error {result['top1_err']:.2%}, "
          f"top-5 error {result['top5_err']:.2%}")
    print(json.dumps(result))
    if args.json:
        with atomic_write(args.json) as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def _check_output(path, overwrite):
    """Refuse, before evaluating, a --json path that cannot be written or would replace a file unasked."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--json {path!r} is a directory; name the file to write.")
    if not os.path.isdir(folder):
        raise ValueError(f"--json {path!r}: the folder {folder!r} does not exist; create it or choose another path.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"--json {path!r} already exists; pass --overwrite to replace it, or choose another path.")


def run(args):
    sources = kzoo.data.sources  # TensorFlow: after the arguments are parsed
    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --run-dir (a training run) or --model NAME --weights PATH.")
    if args.run_dir and (args.weights or args.mean):
        flag = "--weights" if args.weights else "--mean"
        raise ValueError(f"{flag} goes with --model; --run-dir {args.run_dir} brings its own weights and mean.")
    dataset = args.dataset
    if args.run_dir:
        trained = load(run_dir=args.run_dir)
        if not (args.dataset or args.data_dir):  # the run's own data is the default
            if trained.dataset not in sources.BUILTIN:
                raise ValueError(f"run {args.run_dir} was trained on {trained.dataset!r}; say where its "
                                 f"validation images are: --dataset {trained.dataset} --data-dir DIR (or "
                                 f"--data-dir FOLDER of class sub-folders).")
            dataset = trained.dataset
        source = sources.load_source(dataset, args.data_dir)
    else:
        weights = model_weights(args.model, args.weights)
        source = sources.load_source(dataset, args.data_dir)
        trained = load(args.model, weights=weights, classes=source.classes, mean=args.mean)
    _check_classes(source, trained.model)
    kzoo.data.shards.check_protocol(source, trained.preprocessing, args.protocol)
    val = source.val.take(args.limit) if args.limit else source.val
    labels = []

    def images():  # streamed: a validation set need not fit in memory
        with sources.naming_bad_images(source):
            for image, label in val:
                labels.append(int(label))
                yield image.numpy()

    total = int(val.cardinality()) if val.cardinality() >= 0 else None
    return kzoo.evaluate.views.evaluate(trained, images(), labels, args.protocol, progress=True, total=total)


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
