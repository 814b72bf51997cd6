"""`python -m kzoo.evaluate`: a trained classifier's top-1/top-5 error under a paper protocol.

    python -m kzoo.evaluate --run-dir runs/alexnet-alexnet-digits --protocol 10crop
    python -m kzoo.evaluate --model overfeat_accurate --weights W.weights.h5 \\
        --dataset imagenet2012 --data-dir DIR --protocol dense

Protocols: center (one centre view), 10crop (AlexNet §4.1), dense (OverFeat's
offset-pooled multi-scale maps over Table 5's scales, with flips), multiscale
(ResNet's fully convolutional test over shorter sides 224-640). A run directory
brings the model, its weights, its preprocessing and the training set's mean
(kzoo.load); with --model, registered --weights bring theirs, a weights file needs
--mean R G B.
"""

import argparse
import json
import sys

import numpy as np

from kzoo.utils.cli import float_between, model_weights, positive_int

PROTOCOLS = ("center", "10crop", "dense", "multiscale")


def evaluate(trained, images, labels, protocol, limit=None):
    """Top-1 and top-5 error of `trained` (a kzoo.load object) on raw uint8 `images` and `labels`."""
    from kzoo.evaluate import dense as dense_eval
    from kzoo.evaluate import fcn as fcn_eval

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {protocol!r}; expected one of {PROTOCOLS}.")
    model = trained.model
    size = model.inputs[0].shape[1]
    scale = size / 224  # the papers' scales are for 224-ish inputs; smaller models scale them
    probs = []
    if protocol == "dense":
        dense = dense_eval.dense_model(model)
        sizes = [max(size + 24, round(h * scale)) for h, _ in dense_eval.TABLE5_SCALES]
    elif protocol == "multiscale":
        fcn = fcn_eval.fully_convolutional(model)
        sizes = [max(size, round(s * scale)) for s in fcn_eval.RESNET_SCALES]
    for image in images[:limit]:
        if protocol == "center":
            probs.append(model.predict(trained.preprocess(image), verbose=0)[0])
        elif protocol == "10crop":
            probs.append(model.predict(trained.ten_views(image)[0], verbose=0).mean(axis=0))
        elif protocol == "dense":
            view = trained.mean_free(image)[0]
            scored = [fcn_eval.resize_shorter(view, s) for s in sizes]
            probs.append(dense_eval.dense_scores(dense, scored))
        else:
            view = trained.mean_free(image)[0]
            probs.append(fcn_eval.multiscale_probabilities(fcn, [view], sizes=sizes)[0])
    probs, labels = np.stack(probs), np.asarray(labels[: len(probs)])
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return {"protocol": protocol, "images": len(labels),
            "top1_err": float(np.mean(top5[:, 0] != labels)),
            "top5_err": float(np.mean(~(top5 == labels[:, None]).any(axis=1)))}


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
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{result['protocol']}: {result['images']} images, top-1 error {result['top1_err']:.2%}, "
          f"top-5 error {result['top5_err']:.2%}")
    print(json.dumps(result))
    return 0


def run(args):
    from kzoo.data.sources import BUILTIN, load_source, naming_bad_images
    from kzoo.inference import load

    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --run-dir (a training run) or --model NAME --weights PATH.")
    if args.run_dir and (args.weights or args.mean):
        flag = "--weights" if args.weights else "--mean"
        raise ValueError(f"{flag} goes with --model; --run-dir {args.run_dir} brings its own weights and mean.")
    dataset = args.dataset
    if args.run_dir:
        trained = load(run_dir=args.run_dir)
        if not (args.dataset or args.data_dir):  # the run's own data is the default
            if trained.dataset not in BUILTIN:
                raise ValueError(f"run {args.run_dir} was trained on {trained.dataset!r}; say where its "
                                 f"validation images are: --dataset {trained.dataset} --data-dir DIR (or "
                                 f"--data-dir FOLDER of class sub-folders).")
            dataset = trained.dataset
        source = load_source(dataset, args.data_dir)
    else:
        weights = model_weights(args.model, args.weights)
        source = load_source(dataset, args.data_dir)
        trained = load(args.model, weights=weights, classes=source.classes, mean=args.mean)
    _check_classes(source, trained.model)
    with naming_bad_images(source):
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
