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
import json
import os
import sys

import numpy as np

PROTOCOLS = ("center", "10crop", "dense", "multiscale")


def read_run_config(run_dir):
    """A training run's config.json (identity, config, dataset)."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (no config.json).")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_run(run_dir):
    """(model with softmax, mean image or colour, dataset name) from a training run."""
    from kzoo import registry
    from kzoo.train.engine import restore_model

    config = read_run_config(run_dir)
    identity, dataset = config["identity"], config["dataset"]
    crop = identity["crop"]
    model = registry.create_model(identity["model"], input_shape=(crop, crop, 3), classes=dataset["classes"],
                                  **identity["model_options"])
    restore_model(run_dir, model, mixed_precision=config["config"].get("mixed_precision", False))
    stats_files = sorted(p for d in (run_dir, os.path.join(run_dir, "stats")) if os.path.isdir(d)
                         for p in (os.path.join(d, n) for n in os.listdir(d)) if p.endswith(".npz"))
    mean = np.load(stats_files[0])["mean"] if stats_files else np.zeros(3, np.float32)
    return model, mean, dataset["name"]


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
    for image in images[:limit]:
        view = _views(image, mean, size, protocol)
        if protocol in ("center", "10crop"):
            probs.append(predict_views(model, view[None], protocol)[0])
        elif protocol == "dense":
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
    parser.add_argument("--weights", help="weights file for --model")
    parser.add_argument("--dataset", help="tfds name; default: the run's built-in digits")
    parser.add_argument("--data-dir", help="tfds data_dir, or a folder of class sub-folders")
    parser.add_argument("--protocol", default="center", choices=PROTOCOLS)
    parser.add_argument("--limit", type=int, help="evaluate the first N validation images only")
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
    from kzoo.data.sources import load_source

    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --run-dir (a training run) or --model NAME --weights PATH.")
    source = load_source(args.dataset, args.data_dir)
    pairs = list(source.val.take(args.limit) if args.limit else source.val)
    images, labels = [p[0].numpy() for p in pairs], np.array([int(p[1]) for p in pairs])
    if args.run_dir:
        model, mean, _ = load_run(args.run_dir)
    else:
        from kzoo.weights import expected_mean

        model = registry.create_model(args.model, weights=args.weights, classes=source.classes)
        mean = expected_mean(args.model, args.weights)
        if mean is None:
            mean = np.mean([im.reshape(-1, 3).mean(0) for im in images], axis=0).astype(np.float32)
    return evaluate(model, images, labels, args.protocol, mean)


if __name__ == "__main__":
    sys.exit(main())
