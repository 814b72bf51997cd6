"""`python -m kzoo.visualize`: ZFNet's figures and the papers' analyses for a trained model.

    python -m kzoo.visualize deconv --run-dir runs/zfnet-zfnet-digits --layer relu5
    python -m kzoo.visualize top9 --run-dir RUN --layer relu2 --maps 0 1 2
    python -m kzoo.visualize occlusion --model zfnet --weights W.weights.h5 --images cat.jpg --label 281 --out figs
    python -m kzoo.visualize filters --run-dir RUN
    python -m kzoo.visualize neighbours --run-dir RUN
    python -m kzoo.visualize responses --model resnet20 plain20 --weights R.weights.h5 P.weights.h5 --out figs
    python -m kzoo.visualize predictions --model resnet20 --weights digits --images a.png b.png --labels 3 7 --out figs
    python -m kzoo.visualize curves RUN1 RUN2 ... [--out FILE.png]    (ResNet Figs. 1, 4, 6)
    python -m kzoo.visualize invariance --model resnet20 --weights digits --out figs [--transform rotate]
    python -m kzoo.visualize correspondence --run-dir RUN --images dogs/ --boxes parts.csv    (image,x1,y1,x2,y2,part)

Images: --images FILE/FOLDER ..., or validation images (--dataset / --data-dir as
for training; default: a run's own built-in data, else the built-in digits), first
--limit. Each is prepared as the model was validated (kzoo.load: the run's or the
registered weights' resize, centre crop and mean; a weights file needs --mean R G B;
random weights get a zero mean).
Figures go to --out (default with --run-dir: RUN/figures; with --model, --out is needed); each
path is printed.
"""

import argparse
import os
import sys

import numpy as np

import kzoo
from kzoo.inference import load
from kzoo.data import images as image_files
from kzoo.utils.cli import (ArgumentParser, add_verbose_flag, flag_error, float_between, non_negative_float,
                            non_negative_int, positive_float, positive_int, quiet_tensorflow)

COMMANDS = ("deconv", "top9", "occlusion", "filters", "neighbours", "responses", "predictions", "curves",
            "invariance", "correspondence")
# --limit's default: deconv and occlusion draw a figure per image (a few to look at);
# top9 and neighbours search the images.
DEFAULT_LIMIT = {"deconv": 8, "occlusion": 8, "predictions": 8,  # predictions: Fig. 4's eight
                 "invariance": 5, "correspondence": 5}  # ZFNet Fig. 5's and Table 1's five images
PER_PAGE = 8  # deconv: images per figure file


def read_images(args, trained, split="val", limit=None, label=None):
    """(raw images, labels or None, files or None) of --images or the dataset's `split`, the
    first `limit` (default --limit); `label`: only the dataset images of that class ("first":
    the first image's class)."""
    sources = kzoo.data.sources  # TensorFlow: after the arguments are parsed
    files = None
    if args.images:
        files = image_files.files(args.images, "--images")[: limit or args.limit]  # only the files drawn are read
        images, labels = [image_files.read(f) for f in files], None
    else:
        source = sources.load_source(args.dataset, args.data_dir)
        kzoo.data.shards.check_protocol(source, trained.preprocessing, "center")  # shards resized otherwise
        ds = source.val if split == "val" else source.train
        with sources.naming_bad_images(source):
            if label is not None:
                label = int(next(iter(ds.take(1)))[1]) if label == "first" else int(label)
                ds = ds.filter(lambda image, y: y == label)
            pairs = list(ds.take(limit or args.limit))
        if not pairs:
            raise ValueError(f"dataset {source.name!r} has no {split} images of class {label}; pick another --label "
                             f"(0..{source.classes - 1}).")
        images, labels = [p[0].numpy() for p in pairs], np.array([int(p[1]) for p in pairs])
    limit = limit or args.limit
    return images[:limit], labels, files and files[:limit]


def load_inputs(args, trained, split="val", limit=None, pictures=False):
    """(model-ready centre views (N, S, S, 3), labels or None) of --images or the dataset,
    prepared as `trained` (kzoo.load) was validated; with `pictures`, also the same views
    as pictures (RGB in [0, 1], no mean)."""
    images, labels, _ = read_images(args, trained, split, limit)
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
    return load(names[index], weights=weights[index], mean=args.mean, **options), args.out


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


def _deconvnet(model):
    """A Deconvnet for occlusion's panel (c), or None (said on stderr) where the model has none."""
    try:
        return kzoo.visualize.deconv.Deconvnet(model)
    except (ValueError, RuntimeError) as err:
        print(f"warning: occlusion draws no panel (c), the deconvnet projection: {err}", file=sys.stderr)
        return None


def given_labels(args, trained):
    """The class indices --labels gives for the --images files (names or indices), or None."""
    if not args.labels:
        return None
    if not args.images:
        raise ValueError("--labels names the correct classes of --images; validation images of a "
                         "dataset bring their own labels.")
    files = image_files.files(args.images, "--images")
    if len(args.labels) != len(files):
        raise ValueError(f"argument --labels: {len(args.labels)} labels for {len(files)} --images files; "
                         f"give one per file, in the order they are read (folders sorted).")
    return [kzoo.visualize.predictions.class_index(v, trained.class_names) for v in args.labels]


def image_names(args, count):
    """Names of the first `count` images: the --images files' names, else "val I"."""
    if args.images:
        return [os.path.basename(f) for f in image_files.files(args.images, "--images")[:count]]
    return [f"val {i}" for i in range(count)]


def _predictions(args, trained, out):
    """AlexNet Fig. 4 (left): top-5 bars of each image; the correct label from --labels or the dataset."""
    given = given_labels(args, trained)
    images, labels, pictures = load_inputs(args, trained, pictures=True)
    if given is not None:
        labels = given[: len(images)]
    titles = image_names(args, len(images)) if args.images else None
    probabilities = trained.model.predict(images, batch_size=32, verbose=0)
    return kzoo.visualize.predictions.predictions_figure(pictures, trained.decode(probabilities, top=5),
                                                        os.path.join(out, "predictions.png"), labels=labels,
                                                        class_names=trained.class_names, titles=titles)


def run(args):
    """Make the figure(s) of `args.command`; returns the paths written."""
    trained, out = load_model(args)
    if args.limit is None:
        args.limit = DEFAULT_LIMIT.get(args.command, 64)
    if args.command in ("invariance", "correspondence"):  # ZFNet §4.2 Fig. 5, §4.3 Table 1 (arXiv numbering)
        # this module's image readers go along (they import each other's module otherwise)
        return getattr(kzoo.visualize, args.command).from_args(args, trained, out, sys.modules[__name__])
    return _FIGURES[args.command](args, trained, out)  # the visualize modules (Keras) load as each needs them


def _deconv(args, trained, out):
    common, model = kzoo.visualize.common, trained.model
    layer = args.layer or common.last_feature_layer(model)
    _check_unit(args, model, layer)
    images, _, pictures = load_inputs(args, trained, pictures=True)
    position = tuple(args.position) if args.position else None
    deconvnet = kzoo.visualize.deconv.Deconvnet(model)
    projections, units, values = deconvnet.project(images, layer, args.feature_map, position)
    pages, names = range(0, len(images), PER_PAGE), image_names(args, len(images))  # the folders walked once
    paths = []
    for number, start in enumerate(pages, 1):  # files of PER_PAGE rows, numbered when several
        end = start + PER_PAGE
        fig = kzoo.visualize.deconv.deconv_figure(pictures[start:end], projections[start:end], units[start:end],
                                                  layer, names=names[start:end])
        name = f"deconv-{layer}-{number}.png" if len(pages) > 1 else f"deconv-{layer}.png"
        paths.append(common.save_figure(fig, os.path.join(out, name)))
    return paths


def _top9(args, trained, out):
    model, top9 = trained.model, kzoo.visualize.top9
    layer = args.layer or kzoo.visualize.common.last_feature_layer(model)
    _check_unit(args, model, layer)
    images, _ = load_inputs(args, trained)
    batches = (images[i : i + 32] for i in range(0, len(images), 32))
    results = top9.top_activations(model, batches, layer, args.maps, k=9)
    return [top9.top9_figure(results, os.path.join(out, f"top9-{layer}.png"), title=f"{model.name} {layer}")]


def _occlusion(args, trained, out):
    model, occlusion = trained.model, kzoo.visualize.occlusion
    _check_occlusion(args, model)
    images, labels, pictures = load_inputs(args, trained, pictures=True)
    deconvnet = _deconvnet(model)
    paths = []
    for i, image in enumerate(images):
        label = args.label if args.label is not None else (
            int(labels[i]) if labels is not None else int(np.argmax(model(image[None])[0])))
        maps = occlusion.occlusion_maps(model, image, label, layer=args.layer, size=args.size, stride=args.stride)
        if deconvnet is not None:  # panel (c)
            maps.update(occlusion.strongest_map_projection(model, image, maps, deconvnet))
        paths.append(occlusion.occlusion_figure(pictures[i], maps, os.path.join(out, f"occlusion-{i}.png"),
                                                class_names=trained.class_names))
    return paths


def _filters(args, trained, out):
    analysis, model = kzoo.visualize.analysis, trained.model
    print(analysis.rms_report(analysis.filter_rms(model), radius=args.radius))
    note = analysis.noise_note(model, args.layer)
    if note:
        print(note)
    return [analysis.filter_grid_figure(model, os.path.join(out, "filters.png"), layer=args.layer)]


def _neighbours(args, trained, out):
    analysis, common, model = kzoo.visualize.analysis, kzoo.visualize.common, trained.model
    queries, _ = load_inputs(args, trained)
    train, _ = load_inputs(args, trained, split="train", limit=args.train_limit)
    if args.k > len(train):
        raise flag_error("--k", args.k, f"at most the {len(train)} training images searched (--train-limit)")
    idx, _ = analysis.nearest_neighbours(analysis.hidden_features(model, queries, args.layer),
                                         analysis.hidden_features(model, train, args.layer), k=args.k)
    return [analysis.neighbours_figure([common.to_display(q) for q in queries],
                                       [common.to_display(t) for t in train], idx,
                                       os.path.join(out, "neighbours.png"))]


def _responses(args, trained, out):
    results = {}
    for i in range(len(args.run_dir or args.model)):
        trained_i = load_model(args, i)[0] if i else trained
        model_i = trained_i.model
        images, _ = load_inputs(args, trained_i)
        label = model_i.name if model_i.name not in results else f"{model_i.name} ({i + 1})"
        results[label] = kzoo.visualize.analysis.layer_responses(model_i, images)
    return [kzoo.visualize.analysis.responses_figure(results, os.path.join(out, "responses.png"))]


_FIGURES = {"deconv": _deconv, "top9": _top9, "occlusion": _occlusion, "predictions": lambda a, t, o: [
    _predictions(a, t, o)], "filters": _filters, "neighbours": _neighbours, "responses": _responses}


# The flags of one or a few commands: given to another, they are refused rather than ignored.
COMMAND_FLAGS = {
    "--feature-map": ("deconv",), "--position": ("deconv",), "--maps": ("top9",),
    "--label": ("occlusion", "correspondence"), "--labels": ("predictions", "invariance"),
    "--transform": ("invariance",), "--shifts": ("invariance",), "--scales": ("invariance",),
    "--angles": ("invariance",), "--layers": ("invariance", "correspondence"), "--boxes": ("correspondence",),
    "--draws": ("correspondence",), "--seed": ("correspondence",), "--size": ("occlusion",),
    "--stride": ("occlusion",), "--radius": ("filters",), "--k": ("neighbours",), "--train-limit": ("neighbours",),
    "--layer": tuple(c for c in COMMANDS if c not in ("invariance", "correspondence", "predictions", "curves",
                                                      "responses")),
}


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.visualize", description=__doc__,
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
    parser.add_argument("--out", help="folder for the figures (default with --run-dir: RUN/figures; needed with "
                        "--model)")
    parser.add_argument("--layer", help="layer name (default: the last ReLU feature map; filters: the first conv)")
    parser.add_argument("--feature-map", type=non_negative_int, help="deconv: the map to project (default: the strongest)")
    parser.add_argument("--position", type=non_negative_int, nargs=2, metavar=("Y", "X"), help="deconv: the unit in the map")
    parser.add_argument("--maps", type=non_negative_int, nargs="+", help="top9: feature maps (default: the first 8)")
    parser.add_argument("--label", type=non_negative_int, help="occlusion: the correct class (default: the dataset's "
                        "label); correspondence: the class whose validation images are used (default: the first's)")
    parser.add_argument("--labels", nargs="+", metavar="LABEL", help="predictions, invariance: the correct class "
                        "(name or index) of each --images file, in the order read (folders sorted)")
    parser.add_argument("--transform", nargs="+", choices=("translate", "scale", "rotate"),
                        help="invariance: the transforms (default all three)")
    parser.add_argument("--shifts", type=float_between(-1000, 1000), nargs="+", metavar="PX",
                        help="invariance: vertical shifts in pixels, + is down (default -60..60 by 10 at 224px, "
                        "scaled to the input)")
    parser.add_argument("--scales", type=positive_float, nargs="+", help="invariance: scale factors about the "
                        "centre (default 1.0..1.8 by 0.1)")
    parser.add_argument("--angles", type=float_between(-3600, 3600), nargs="+", metavar="DEG",
                        help="invariance: rotations about the centre, degrees counter-clockwise (default 0..360 by 15)")
    parser.add_argument("--layers", nargs="+", help="invariance: layers whose distances are drawn (default layer 1, "
                        "7, output: relu1 relu7 fc8; ResNets conv1_relu avg_pool fc); correspondence: layers "
                        "(default 5 and 7: relu5 relu7; ResNets the last block and avg_pool)")
    parser.add_argument("--boxes", help="correspondence: CSV image,x1,y1,x2,y2,part (pixels of the stored image; "
                        "image: file name or stem, validation index, or * for all)")
    parser.add_argument("--draws", type=positive_int, default=10, help="correspondence: random-box draws per part "
                        "(default 10)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="correspondence: seed of the random boxes")
    parser.add_argument("--size", type=positive_int, help="occlusion: side of the grey square (pixels)")
    parser.add_argument("--stride", type=positive_int, help="occlusion: step of the square (pixels)")
    parser.add_argument("--radius", type=non_negative_float, help="filters: report filters whose RMS exceeds this (ZFNet: 0.1)")
    parser.add_argument("--k", type=positive_int, default=5, help="neighbours: how many (default 5)")
    parser.add_argument("--train-limit", type=positive_int, default=500, help="neighbours: training images searched")
    add_verbose_flag(parser)
    return parser


def _check_combinations(parser, args):
    """Flags that another flag or the command would make void: refused, not ignored."""
    several = [flag for flag, value in (("--run-dir", args.run_dir), ("--model", args.model)) if len(value or []) > 1]
    if several and args.command != "responses":
        parser.error(f"{several[0]} takes several values for responses only (it compares models); give one for "
                     f"{args.command}.")
    if args.images and (args.dataset or args.data_dir):
        parser.error(f"--images replaces the dataset: give --images, or {'--dataset' if args.dataset else '--data-dir'}"
                     f", not both.")
    given = [flag for flag, value in (("--images", args.images), ("--dataset", args.dataset),
                                      ("--data-dir", args.data_dir), ("--limit", args.limit)) if value is not None]
    if args.command == "filters" and given:
        parser.error(f"filters draws the first layer's filters and reads no images: leave {', '.join(given)} out.")
    if args.model and not args.run_dir and not args.out:  # never into the current folder unasked
        parser.error("--out FOLDER: where the figures go; give it with --model (with --run-dir they go into "
                     "RUN/figures).")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    words = [a for a in argv if not a.startswith("-")]
    # curves has its own arguments (RUN ... [--out FILE]) and no model: kzoo.visualize.curves; it may
    # come after its flags, unless another command is named (then "curves" is a flag's value)
    if words[:1] == ["curves"] or ("curves" in words and not set(words) & (set(COMMANDS) - {"curves"})):
        argv.remove("curves")
        return kzoo.visualize.curves.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "curves":  # a flag with a value came first
        parser.error("curves comes first, then the runs: python -m kzoo.visualize curves RUN ... [--out FILE.png]")
    unused = [flag for flag, commands in COMMAND_FLAGS.items()
              if args.command not in commands and flag[2:].replace("-", "_") in parser.given]
    if unused:  # not silently ignored
        where = "; ".join(f"{flag} is for {', '.join(COMMAND_FLAGS[flag])}" for flag in unused)
        parser.error(f"{where}, not {args.command}: leave {'it' if len(unused) == 1 else 'them'} out"
                     + (" (--layers names its layers)" if "--layer" in unused else "") + ".")
    _check_combinations(parser, args)
    quiet_tensorflow(args.verbose)
    default_limit = args.limit is None and DEFAULT_LIMIT.get(args.command)
    try:
        if default_limit and args.images:  # said only where the default left files out
            default_limit = len(image_files.files(args.images, "--images")) > default_limit and default_limit
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
