"""`python -m kzoo.evaluate`: a trained classifier's top-1/top-5 error under a paper protocol.

    python -m kzoo.evaluate --run-dir runs/alexnet-alexnet-digits --protocol 10crop
    python -m kzoo.evaluate --model overfeat_accurate --weights W.weights.h5 \\
        --dataset imagenet2012 --data-dir DIR --protocol dense

Protocols: center (one centre view), 10crop (AlexNet §4.1), dense (OverFeat's
offset-pooled multi-scale maps over Table 5's scales, with flips), multiscale
(ResNet's fully convolutional test over shorter sides 224-640). A run directory
brings the model, its weights and the training set's mean; with --model and
--weights a registered name brings its mean, a file the evaluated images' mean colour.
"""

import argparse
import contextlib
import json
import os
import re
import sys

import numpy as np

from kzoo.utils.cli import model_weights, positive_int

PROTOCOLS = ("center", "10crop", "dense", "multiscale")


def read_run_config(run_dir):
    """A training run's config.json (identity, config, dataset)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (no config.json).")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_run(run_dir):
    """(model with softmax, mean image or colour, dataset name) from a training run; an
    unfinished run is said on stderr."""
    import gc

    import tensorflow as tf

    from kzoo import registry
    from kzoo.train.engine import restore_model

    config = read_run_config(run_dir)
    identity, dataset = config["identity"], config["dataset"]
    crop = identity["crop"]
    model = registry.create_model(identity["model"], input_shape=(crop, crop, 3), classes=dataset["classes"],
                                  **identity["model_options"])
    error = None
    with _quiet_checkpoint_logs():
        try:
            state = restore_model(run_dir, model, mixed_precision=config["config"].get("mixed_precision", False))
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            error = _mismatch(run_dir, config, err)
        if error is not None:
            del model  # with it the half-read checkpoint, whose warnings come now, silenced
            gc.collect()
    if error is not None:
        raise error
    unfinished = _unfinished(run_dir, config, state)
    if unfinished:
        print(f"warning: {unfinished}; using it as it is.", file=sys.stderr)
    stats_files = sorted(p for d in (run_dir, os.path.join(run_dir, "stats")) if os.path.isdir(d)
                         for p in (os.path.join(d, n) for n in os.listdir(d)) if p.endswith(".npz"))
    mean = np.load(stats_files[0])["mean"] if stats_files else np.zeros(3, np.float32)
    return model, mean, dataset["name"]


@contextlib.contextmanager
def _quiet_checkpoint_logs():
    """TF logs one warning per unmatched tensor when a half-read checkpoint is collected."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _mismatch(run_dir, config, err):
    """One line for a checkpoint that does not fit the run's model: TF's own reason (the
    innermost error), the model config.json names and where the checkpoint is."""
    while err.__cause__ or err.__context__:
        err = err.__cause__ or err.__context__
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    reason = re.sub(r"\s*Start afresh with another --run-dir[^.]*\.$", "", reason).rstrip(".")  # training's advice
    identity = config["identity"]
    return ValueError(
        f"the checkpoint in {os.path.join(run_dir, 'checkpoints')!r} does not fit the run's model "
        f"{identity['model']} (options {identity['model_options']}, input {identity['crop']}, "
        f"{config['dataset']['classes']} classes, as its config.json says): {reason}. It comes from another "
        f"run, or config.json was edited; restore the run's own files.")


def _unfinished(run_dir, config, state):
    """Why the run is not finished (its checkpoint short of the planned training), or None."""
    planned = config["config"].get("epochs")
    where = f"epoch {state['epoch']} of {planned}, step {state['step']}" + (
        f" ({state['batch_in_epoch']} batches into epoch {state['epoch'] + 1})" if state.get("batch_in_epoch") else "")
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(metrics_path):
        return f"run {run_dir!r} is unfinished (no metrics.json): its checkpoint is at {where}"
    with open(metrics_path, encoding="utf-8") as f:
        steps = json.load(f).get("steps")
    if steps is not None and state["step"] < steps:
        return f"run {run_dir!r} finished at step {steps}, but its checkpoint is at {where}"
    return None


def _views(image, mean, size, protocol):
    """One image (H, W, 3 uint8) -> the protocol's mean-free input(s)."""
    from kzoo.evaluate.fcn import resize_shorter

    image = np.asarray(image, np.float32)
    if protocol in ("center", "10crop"):
        side = mean.shape[0] if mean.ndim == 3 else round(size * 256 / 224)
        square = resize_shorter(image, side)
        top, left = (square.shape[0] - side) // 2, (square.shape[1] - side) // 2
        square = square[top : top + side, left : left + side]
        return square - (mean if mean.ndim == 3 else mean.reshape(-1, 3).mean(0))
    return image - mean.reshape(-1, 3).mean(0)


def center_input(image, mean, size):
    """One uint8 image -> the model's centre view (size x size), mean removed, as in evaluation."""
    from kzoo.evaluate.views import center_crop

    return center_crop(_views(image, mean, size, "center")[None], size)[0]


def evaluate(model, images, labels, protocol, mean, limit=None):
    """Top-1 and top-5 error of `model` (softmax classifier) on uint8 `images` and `labels`."""
    from kzoo.evaluate import dense as dense_eval
    from kzoo.evaluate import fcn as fcn_eval
    from kzoo.evaluate.views import predict_views

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown --protocol {protocol!r}; expected one of {PROTOCOLS}.")
    size = model.inputs[0].shape[1]
    scale = size / 224  # the papers' scales are for 224-ish inputs; smaller models scale them
    probs = []
    if protocol == "dense":
        dense = dense_eval.dense_model(model)
        sizes = [max(size + 24, round(h * scale)) for h, _ in dense_eval.TABLE5_SCALES]
    elif protocol == "multiscale":
        fcn = fcn_eval.fully_convolutional(model)
        sizes = [max(size, round(s * scale)) for s in fcn_eval.RESNET_SCALES]
    images = images[:limit]
    if protocol in ("center", "10crop"):
        # Chunks of images per predict call: each call costs ~0.1 s before any image is seen.
        for start in range(0, len(images), 256):
            views = np.stack([_views(image, mean, size, protocol) for image in images[start : start + 256]])
            probs.extend(predict_views(model, views, protocol))
    for image in images if protocol in ("dense", "multiscale") else ():
        view = _views(image, mean, size, protocol)
        if protocol == "dense":
            scored = [fcn_eval.resize_shorter(view, s) for s in sizes]
            probs.append(dense_eval.dense_scores(dense, scored))
        else:
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
    from kzoo import registry
    from kzoo.data.sources import BUILTIN, load_source, naming_bad_images

    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --run-dir (a training run) or --model NAME --weights PATH.")
    if args.run_dir and args.weights:
        raise ValueError(f"--weights goes with --model; --run-dir {args.run_dir} brings its own weights.")
    weights = None if args.run_dir else model_weights(args.model, args.weights)
    dataset = args.dataset
    if args.run_dir:
        model, mean, trained_on = load_run(args.run_dir)
        if trained_on in BUILTIN and not (args.dataset or args.data_dir):
            dataset = trained_on  # the run's own built-in data (its labels fit the model)
    source = load_source(dataset, args.data_dir)
    if not args.run_dir:
        model = registry.create_model(args.model, weights=weights, classes=source.classes)
    _check_classes(source, model)
    with naming_bad_images(source):
        pairs = list(source.val.take(args.limit) if args.limit else source.val)
    images, labels = [p[0].numpy() for p in pairs], np.array([int(p[1]) for p in pairs])
    if not args.run_dir:
        from kzoo.weights import expected_mean

        mean = expected_mean(args.model, weights)
        if mean is None:
            mean = np.mean([im.reshape(-1, 3).mean(0) for im in images], axis=0).astype(np.float32)
    return evaluate(model, images, labels, args.protocol, mean)


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
