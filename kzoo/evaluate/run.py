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

import numpy as np

import kzoo
from kzoo import preprocessing
from kzoo.evaluate.protocols import FLIPPED, PROTOCOLS, VIEWS, view_sizes
from kzoo.inference import load
from kzoo.utils.files import atomic_write
from kzoo.utils.cli import add_verbose_flag, float_between, model_weights, positive_int, quiet_tensorflow


def evaluate(trained, images, labels, protocol, limit=None):
    """Top-1 and top-5 error of `trained` (a kzoo.load object) on raw uint8 `images` and
    `labels`, with the views the protocol took (`view_sizes`: (height, width) per view)."""
    probs = protocol_scores(trained, images[:limit], protocol)
    labels = np.asarray(labels[: len(probs)])
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return {"protocol": protocol, "images": len(labels),
            "top1_err": float(np.mean(top5[:, 0] != labels)),
            "top5_err": float(np.mean(~(top5 == labels[:, None]).any(axis=1))),
            "views": VIEWS[protocol], "view_sizes": [list(hw) for hw in view_sizes(trained.model, protocol)]}


def protocol_scores(trained, images, protocol):
    """(images, classes) scores of `trained` (kzoo.load) on raw uint8 `images` under
    `protocol`, on the views `view_sizes` gives: softmax means (center, 10crop,
    multiscale), OverFeat's dense scores."""
    dense_eval, fcn_eval = kzoo.evaluate.dense, kzoo.evaluate.fcn  # Keras: loaded here, not for --help
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {protocol!r}; expected one of {PROTOCOLS}.")
    model = trained.model
    probs = []
    if protocol in FLIPPED:
        dense = dense_eval.dense_model(model)
        scales = view_sizes(model, protocol)[::2]  # each size is listed with its flip, which dense_scores adds
    elif protocol == "multiscale":
        fcn = fcn_eval.fully_convolutional(model)
    if protocol in ("center", "10crop"):
        # Chunks of images per predict call: each call costs ~0.1 s before any image is seen.
        for start in range(0, len(images), 256):
            chunk = images[start : start + 256]
            if protocol == "center":
                probs.extend(model.predict(trained.preprocess(chunk), verbose=0))
            else:
                views = trained.ten_views(chunk)
                flat = model.predict(views.reshape(-1, *views.shape[2:]), verbose=0)
                probs.extend(flat.reshape(len(views), 10, -1).mean(axis=1))
        return np.stack(probs)
    for image in images:
        view = trained.mean_free(image)[0]  # the whole image: these protocols resize it themselves
        if protocol in FLIPPED:
            probs.append(dense_eval.dense_scores(dense, [fcn_eval.cover_crop(view, h, w) for h, w in scales]))
        else:
            shapes = view_sizes(model, protocol, view.shape)  # its own aspect
            probs.append(fcn_eval.mean_probabilities(fcn, [preprocessing.resize(view, *hw) for hw in shapes]))
    return np.stack(probs)


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
    with sources.naming_bad_images(source):
        pairs = list(source.val.take(args.limit) if args.limit else source.val)
    images, labels = [p[0].numpy() for p in pairs], np.array([int(p[1]) for p in pairs])
    return evaluate(trained, images, labels, args.protocol)


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
