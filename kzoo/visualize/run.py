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
import dataclasses
import os
import sys

import numpy as np

import kzoo
from kzoo.inference import load
from kzoo.data import images as image_files
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_flags, flag_error, flag_of, flags_from,
                            float_between, non_negative_float, non_negative_int, option, option_fields, positive_float,
                            positive_int, run_command)

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
    return _FIGURES[args.command](args, trained, out)  # the visualize modules (Keras) load as each needs them


def _invariance(args, trained, out):
    """ZFNet §4.2, Fig. 5 (arXiv numbering)."""
    invariance = kzoo.visualize.invariance
    values = {"translate": args.shifts, "scale": args.scales, "rotate": args.angles}
    transforms = invariance.check_sweep(trained.model, args.transform, values, args.layers)
    given = given_labels(args, trained)
    images, labels, pictures = load_inputs(args, trained, pictures=True)
    if given is not None:
        labels = given[: len(images)]
    return invariance.figure_and_numbers(trained, images, pictures, labels, image_names(args, len(images)), out,
                                         transforms, values, args.layers)


def _correspondence(args, trained, out):
    """ZFNet §4.3, Table 1 (arXiv numbering)."""
    correspondence = kzoo.visualize.correspondence
    rows = correspondence.check_table(trained.model, args.boxes, args.layers, args.images, args.label)
    raw, labels, files = read_images(args, trained, label=None if args.images else
                                     ("first" if args.label is None else args.label))
    return correspondence.table_and_images(trained, raw, labels, files, rows, out, args.layers, args.draws,
                                           args.seed)


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
    _predictions(a, t, o)], "filters": _filters, "neighbours": _neighbours, "responses": _responses,
    "invariance": _invariance, "correspondence": _correspondence}


COMMANDS = {  # the model commands, each with what it draws
    "deconv": "ZFNet Fig. 3: deconvnet projections of a unit",
    "top9": "ZFNet Fig. 2: the 9 strongest activations of feature maps",
    "occlusion": "ZFNet Fig. 7: occlusion sensitivity",
    "filters": "ZFNet Fig. 6: first-layer filters and their RMS",
    "neighbours": "AlexNet Fig. 4 (right): nearest training images in feature space",
    "responses": "ResNet Fig. 7: layer response std of several models",
    "predictions": "AlexNet Fig. 4 (left): top-5 predictions",
    "invariance": "ZFNet Fig. 5: invariance to translation, scale, rotation",
    "correspondence": "ZFNet Table 1: correspondence of occluded parts",
}
EVERY = tuple(COMMANDS)
FEATURE_MAPS = ("deconv", "top9", "occlusion", "filters", "neighbours")


@dataclasses.dataclass
class VisualizeOptions:
    """One figure command, typed: each flag declared once, its group the commands that take it."""

    command: str = None
    run_dir: list = option(group=EVERY, nargs="+", help="training run(s): model, weights, mean (responses: several)")
    model: list = option(group=EVERY, nargs="+", help="registered model name(s) (responses: several)")
    weights: list = option(group=EVERY, nargs="+", help="weights file(s), one per --model")
    classes: int = option(group=EVERY, rule=positive_int, help="classes of --model (default: the registry's)")
    mean: list = option(group=EVERY, rule=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects (registered weights and runs bring theirs)")
    images: list = option(group=EVERY, nargs="+", help="image files or folders (default: the dataset's validation)")
    dataset: str = option(group=EVERY, help="tfds name (default: the built-in digits)")
    data_dir: str = option(group=EVERY, help="tfds data_dir, or a folder of class sub-folders")
    limit: int = option(group=EVERY, rule=positive_int, help="images to use (default: 8 for deconv and occlusion, a "
                        "figure each, deconv's 8 to a file; 64 for the others)")
    out: str = option(group=EVERY, help="folder for the figures (default with --run-dir: RUN/figures; needed with "
                      "--model)")
    layer: str = option(group=FEATURE_MAPS, help="layer name (default: the last ReLU feature map; filters: the first "
                        "conv)")
    feature_map: int = option(group=("deconv",), rule=non_negative_int, help="the map to project (default: the "
                              "strongest)")
    position: list = option(group=("deconv",), rule=non_negative_int, nargs=2, metavar=("Y", "X"),
                            help="the unit in the map")
    maps: list = option(group=("top9",), rule=non_negative_int, nargs="+", help="feature maps (default: the first 8)")
    label: int = option(group=("occlusion", "correspondence"), rule=non_negative_int,
                        help="occlusion: the correct class (default: the dataset's label); correspondence: the class "
                             "whose validation images are used (default: the first's)")
    labels: list = option(group=("predictions", "invariance"), nargs="+", metavar="LABEL",
                          help="the correct class (name or index) of each --images file, in the order read (folders "
                               "sorted)")
    transform: list = option(group=("invariance",), nargs="+", choices=("translate", "scale", "rotate"),
                             help="the transforms (default all three)")
    shifts: list = option(group=("invariance",), rule=float_between(-1000, 1000), nargs="+", metavar="PX",
                          help="vertical shifts in pixels, + is down (default -60..60 by 10 at 224px, scaled to the "
                               "input)")
    scales: list = option(group=("invariance",), rule=positive_float, nargs="+",
                          help="scale factors about the centre (default 1.0..1.8 by 0.1)")
    angles: list = option(group=("invariance",), rule=float_between(-3600, 3600), nargs="+", metavar="DEG",
                          help="rotations about the centre, degrees counter-clockwise (default 0..360 by 15)")
    layers: list = option(group=("invariance", "correspondence"), nargs="+",
                          help="invariance: layers whose distances are drawn (default layer 1, 7, output: relu1 "
                               "relu7 fc8; ResNets conv1_relu avg_pool fc); correspondence: layers (default 5 and 7: "
                               "relu5 relu7; ResNets the last block and avg_pool)")
    boxes: str = option(group=("correspondence",), help="CSV image,x1,y1,x2,y2,part (pixels of the stored image; "
                        "image: file name or stem, validation index, or * for all)")
    draws: int = option(10, group=("correspondence",), rule=positive_int, help="random-box draws per part "
                        "(default 10)")
    seed: int = option(0, group=("correspondence",), rule=non_negative_int, help="seed of the random boxes")
    size: int = option(group=("occlusion",), rule=positive_int, help="side of the grey square (pixels)")
    stride: int = option(group=("occlusion",), rule=positive_int, help="step of the square (pixels)")
    radius: float = option(group=("filters",), rule=non_negative_float,
                           help="report filters whose RMS exceeds this (ZFNet: 0.1)")
    k: int = option(5, group=("neighbours",), rule=positive_int, help="how many (default 5)")
    train_limit: int = option(500, group=("neighbours",), rule=positive_int, help="training images searched")

    def __post_init__(self):
        check_flags(self)


def _takes(command):
    """The VisualizeOptions fields `command` takes."""
    return [f.name for f in option_fields(VisualizeOptions) if command in f.metadata["flag"].group]


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.visualize", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, what in COMMANDS.items():
        sub = commands.add_parser(command, help=what, description=what)
        add_flags(sub, VisualizeOptions, only=_takes(command))
        # another command's settings read as not given (the figure functions share helpers)
        sub.set_defaults(**{f.name: f.default for f in option_fields(VisualizeOptions) if f.name not in
                            _takes(command)})
        add_verbose_flag(sub)
    curves = commands.add_parser("curves", help="ResNet Figs. 1, 4, 6: training curves of runs",
                                 description=kzoo.visualize.curves.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(curves, kzoo.visualize.curves.CurvesOptions)
    return parser


def _command_first(argv):
    """The command may come after flags (`--out c.png curves RUN`): put it first."""
    named = [i for i, word in enumerate(argv) if word in COMMANDS or word == "curves"]
    if named and named[0] > 0 and len(named) == 1 and argv[0].startswith("-"):
        return [argv[named[0]], *argv[: named[0]], *argv[named[0] + 1 :]]
    return argv


def _parse(parser, argv):
    """The command line; a flag of another command is named as such ("--k is for neighbours, not
    deconv"), not as unknown."""
    args, extras = parser.parse_known_args(argv)
    declared = {flag_of(f): f.metadata["flag"].group for f in option_fields(VisualizeOptions)}
    flags = [w.split("=", 1)[0] for w in extras if w.startswith("--")]
    owners = {flag: list(declared.get(flag, ())) for flag in flags}
    unused = sorted((flag for flag in set(flags) if owners[flag]), key=list(declared).index)  # as declared
    if unused:  # not silently ignored
        where = "; ".join(f"{flag} is for {', '.join(owners[flag])}" for flag in unused)
        parser.error(f"{where}, not {args.command}: leave {'it' if len(unused) == 1 else 'them'} out"
                     + (" (--layers names its layers)" if "--layer" in unused else "") + ".")
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


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
    parser = build_parser()
    argv = _command_first(list(sys.argv[1:] if argv is None else argv))
    return run_command(parser, _draw, argv, parse=_parse, checks=lambda parser, args: args.command == "curves" or
                       _check_combinations(parser, args), tensorflow=lambda args: args.command != "curves")


def _draw(args):
    if args.command == "curves":
        path, _ = kzoo.visualize.curves.plot(args.runs, args.out)
        print(f"wrote {path}")
        return
    args = flags_from(VisualizeOptions, args, command=args.command)
    default_limit = args.limit is None and DEFAULT_LIMIT.get(args.command)
    if default_limit and args.images:  # said only where the default left files out
        default_limit = len(image_files.files(args.images, "--images")) > default_limit and default_limit
    for path in run(args):
        print(f"wrote {path}")
    if default_limit:
        print(f"(at most {default_limit} images by default; --limit N draws N)")


if __name__ == "__main__":
    sys.exit(main())
