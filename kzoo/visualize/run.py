"""`python -m kzoo.visualize`: ZFNet's figures and the papers' analyses for a trained model.

    python -m kzoo.visualize deconv --run-dir runs/zfnet-zfnet-digits --layer relu5
    python -m kzoo.visualize top9 --run-dir RUN --layer relu2 --maps 0 1 2
    python -m kzoo.visualize occlusion --model zfnet --weights W.weights.h5 --images cat.jpg --label 281
    python -m kzoo.visualize filters --run-dir RUN
    python -m kzoo.visualize neighbours --run-dir RUN
    python -m kzoo.visualize responses --model resnet20 plain20 --weights R.weights.h5 P.weights.h5

Images: --images FILE/FOLDER ..., or validation images (--dataset / --data-dir as
for training; default: a run's own built-in data, else the built-in digits), first
--limit. Each is prepared as the model was validated (kzoo.load: the run's or the
registered weights' resize, centre crop and mean; a weights file needs --mean R G B;
random weights get a zero mean).
Figures go to --out (default: RUN/figures, or ./figures); each path is printed.
"""

import argparse
import os
import sys

import numpy as np

import kzoo
from kzoo.inference import load
from kzoo.preprocessing import image_files
from kzoo.utils.cli import (add_verbose_flag, flag_error, float_between, non_negative_float, non_negative_int,
                            positive_int, quiet_tensorflow)

COMMANDS = ("deconv", "top9", "occlusion", "filters", "neighbours", "responses")
# --limit's default: deconv and occlusion draw a figure per image (a few to look at);
# top9 and neighbours search the images.
DEFAULT_LIMIT = {"deconv": 8, "occlusion": 8}
PER_PAGE = 8  # deconv: images per figure file


def _read_images(paths):
    return [kzoo.data.sources.decode_file(f).numpy() for f in image_files(paths, "--images")], None


def load_inputs(args, trained, split="val", limit=None, pictures=False):
    """(model-ready centre views (N, S, S, 3), labels or None) of --images or the dataset,
    prepared as `trained` (kzoo.load) was validated; with `pictures`, also the same views
    as pictures (RGB in [0, 1], no mean)."""
    sources = kzoo.data.sources  # TensorFlow: after the arguments are parsed
    if args.images:
        images, labels = _read_images(args.images)
    else:
        source = sources.load_source(args.dataset, args.data_dir)
        kzoo.data.shards.check_protocol(source, trained.preprocessing, "center")  # shards resized otherwise
        ds = source.val if split == "val" else source.train
        with sources.naming_bad_images(source):
            pairs = list(ds.take(limit or args.limit))
        images, labels = [p[0].numpy() for p in pairs], np.array([int(p[1]) for p in pairs])
    images = images[: limit or args.limit]
    inputs = trained.preprocess(images)
    return (inputs, labels, trained.pictures(images)) if pictures else (inputs, labels)


def load_model(args, index=0):
    """(kzoo.load's trained model, where figures go) from --run-dir or --model/--weights."""
    runs, names = args.run_dir or [], args.model or []
    if bool(runs) == bool(names):
        raise ValueError("give either --run-dir RUN or --model NAME [--weights PATH].")
    if runs:
        given = [flag for flag, value in (("--weights", args.weights), ("--classes", args.classes),
                                          ("--mean", args.mean)) if value]
        if given:  # a run brings its own; ignoring them would show other weights than asked
            raise ValueError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --model; "
                             f"--run-dir brings its own model and weights.")

        trained = load(run_dir=runs[index])
        if trained.dataset in kzoo.data.sources.BUILTIN and not (args.images or args.dataset or args.data_dir):
            args.dataset = trained.dataset  # the run's own built-in data (its labels fit the model)
        return trained, args.out or os.path.join(runs[index], "figures")
    weights = (args.weights or [None] * len(names))
    if len(weights) != len(names):
        raise ValueError(f"--weights names {len(weights)} files for {len(names)} --model names; give one per model.")
    options = {"classes": args.classes} if args.classes else {}
    return load(names[index], weights=weights[index], mean=args.mean, **options), args.out or "figures"


def _check_unit(args, model, layer):
    """--feature-map / --maps / --position against `layer`'s maps, before any image is read."""
    shape = kzoo.visualize.common.get_layer(model, layer).output.shape
    if len(shape) != 4:
        return  # the visualization itself says the layer is no feature map
    (height, width), channels = shape[1:3], shape[-1]
    for flag, values in (("--feature-map", [args.feature_map]), ("--maps", args.maps or [])):
        bad = [m for m in values if m is not None and m >= channels]
        if bad:
            raise flag_error(flag, " ".join(map(str, bad)), f"0..{channels - 1} (the {channels} maps of {layer})")
    if args.position and not (args.position[0] < height and args.position[1] < width):
        raise flag_error("--position", " ".join(map(str, args.position)),
                         f"Y in 0..{height - 1} and X in 0..{width - 1} (the {height}x{width} maps of {layer})")


def _check_occlusion(args, model):
    classes = model.outputs[0].shape[-1]
    if args.label is not None and args.label >= classes:
        raise flag_error("--label", args.label, f"0..{classes - 1} (the model's {classes} classes)")
    side = min(model.inputs[0].shape[1:3])
    if args.size is not None and args.size > side:
        raise flag_error("--size", args.size, f"1..{side} (the model's {side}px input)")


def run(args):
    """Make the figure(s) of `args.command`; returns the paths written."""
    visualize = kzoo.visualize  # its modules (Keras) load as each command needs them
    common = visualize.common
    trained, out = load_model(args)
    model = trained.model
    layer = args.layer
    if args.limit is None:
        args.limit = DEFAULT_LIMIT.get(args.command, 64)
    if args.command == "deconv":
        layer = layer or common.last_feature_layer(model)
        _check_unit(args, model, layer)
        images, _, pictures = load_inputs(args, trained, pictures=True)
        position = tuple(args.position) if args.position else None
        deconvnet = visualize.deconv.Deconvnet(model)
        projections, units, values = deconvnet.project(images, layer, args.feature_map, position)
        pages = range(0, len(images), PER_PAGE)
        paths = []
        for number, start in enumerate(pages, 1):  # files of PER_PAGE rows, numbered when several
            end = start + PER_PAGE
            fig = visualize.deconv.deconv_figure(pictures[start:end], projections[start:end], units[start:end], layer)
            name = f"deconv-{layer}-{number}.png" if len(pages) > 1 else f"deconv-{layer}.png"
            paths.append(common.save_figure(fig, os.path.join(out, name)))
        return paths
    if args.command == "top9":
        layer = layer or common.last_feature_layer(model)
        _check_unit(args, model, layer)
        images, _ = load_inputs(args, trained)
        batches = (images[i : i + 32] for i in range(0, len(images), 32))
        results = visualize.top9.top_activations(model, batches, layer, args.maps, k=9)
        return [visualize.top9.top9_figure(results, os.path.join(out, f"top9-{layer}.png"),
                                           title=f"{model.name} {layer}")]
    if args.command == "occlusion":
        _check_occlusion(args, model)
        images, labels, pictures = load_inputs(args, trained, pictures=True)
        paths = []
        for i, image in enumerate(images):
            label = args.label if args.label is not None else (
                int(labels[i]) if labels is not None else int(np.argmax(model(image[None])[0])))
            occlusion = visualize.occlusion
            maps = occlusion.occlusion_maps(model, image, label, layer=layer, size=args.size, stride=args.stride)
            paths.append(occlusion.occlusion_figure(pictures[i], maps, os.path.join(out, f"occlusion-{i}.png")))
        return paths
    if args.command == "filters":
        analysis = visualize.analysis
        print(analysis.rms_report(analysis.filter_rms(model), radius=args.radius))
        return [analysis.filter_grid_figure(model, os.path.join(out, "filters.png"), layer=layer)]
    if args.command == "neighbours":
        analysis = visualize.analysis
        queries, _ = load_inputs(args, trained)
        train, _ = load_inputs(args, trained, split="train", limit=args.train_limit)
        if args.k > len(train):
            raise flag_error("--k", args.k, f"at most the {len(train)} training images searched (--train-limit)")
        idx, _ = analysis.nearest_neighbours(analysis.hidden_features(model, queries, layer),
                                             analysis.hidden_features(model, train, layer), k=args.k)
        return [analysis.neighbours_figure([common.to_display(q) for q in queries],
                                           [common.to_display(t) for t in train], idx,
                                           os.path.join(out, "neighbours.png"))]
    results = {}
    for i in range(len(args.run_dir or args.model)):
        trained_i = load_model(args, i)[0] if i else trained
        model_i = trained_i.model
        images, _ = load_inputs(args, trained_i)
        label = model_i.name if model_i.name not in results else f"{model_i.name} ({i + 1})"
        results[label] = visualize.analysis.layer_responses(model_i, images)
    return [visualize.analysis.responses_figure(results, os.path.join(out, "responses.png"))]


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m kzoo.visualize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--run-dir", nargs="+", help="training run(s): model, weights, mean (responses: several)")
    parser.add_argument("--model", nargs="+", help="registered model name(s) (responses: several)")
    parser.add_argument("--weights", nargs="+", help="weights file(s), one per --model")
    parser.add_argument("--classes", type=positive_int, help="classes of --model (default: the registry's)")
    parser.add_argument("--mean", type=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects (registered weights and runs bring theirs)")
    parser.add_argument("--images", nargs="+", help="image files or folders (default: the dataset's validation)")
    parser.add_argument("--dataset", help="tfds name (default: the built-in digits)")
    parser.add_argument("--data-dir", help="tfds data_dir, or a folder of class sub-folders")
    parser.add_argument("--limit", type=positive_int, help="images to use (default: 8 for deconv and occlusion, "
                        "a figure each, deconv's 8 to a file; 64 for the others)")
    parser.add_argument("--out", help="folder for the figures (default RUN/figures or ./figures)")
    parser.add_argument("--layer", help="layer name (default: the last ReLU feature map; filters: the first conv)")
    parser.add_argument("--feature-map", type=non_negative_int, help="deconv: the map to project (default: the strongest)")
    parser.add_argument("--position", type=non_negative_int, nargs=2, metavar=("Y", "X"), help="deconv: the unit in the map")
    parser.add_argument("--maps", type=non_negative_int, nargs="+", help="top9: feature maps (default: the first 8)")
    parser.add_argument("--label", type=non_negative_int, help="occlusion: the correct class (default: the dataset's label)")
    parser.add_argument("--size", type=positive_int, help="occlusion: side of the grey square (pixels)")
    parser.add_argument("--stride", type=positive_int, help="occlusion: step of the square (pixels)")
    parser.add_argument("--radius", type=non_negative_float, help="filters: report filters whose RMS exceeds this (ZFNet: 0.1)")
    parser.add_argument("--k", type=positive_int, default=5, help="neighbours: how many (default 5)")
    parser.add_argument("--train-limit", type=positive_int, default=500, help="neighbours: training images searched")
    add_verbose_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    default_limit = args.limit is None and DEFAULT_LIMIT.get(args.command)
    try:
        paths = run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    for path in paths:
        print(f"wrote {path}")
    if default_limit:
        print(f"(at most {default_limit} images by default; --limit N draws N)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
