"""OverFeat's training (Sermanet et al. 2013, §3.1): `python -m kzoo.recipes.overfeat --model fast|accurate`.

With --localize, after the classifier (trained, or resumed and finished) comes §4:
a box regressor on its frozen layer-5 features, and the ILSVRC localization error.
With --detect, §4.6: a classifier with a background class trained on windows of scenes
(with hard negatives), the box regressor, dense detection and its mean AP.

    python -m kzoo.recipes.overfeat --localize                   # demo: built-in shapes
    python -m kzoo.recipes.overfeat --localize --data-dir DIR --boxes BOXES
    python -m kzoo.recipes.overfeat --detect                     # demo: built-in scenes
    python -m kzoo.recipes.overfeat --detect --data-dir DIR --boxes BOXES
"""

import dataclasses
import os
import sys

import kzoo
from kzoo.preprocessing import PIPELINES
from kzoo.recipes.common import (Recipe, Run, build_parser, check_recipe_flags, run_dir_for, run_from_args, run_recipe,
                                 train_recipe)
from kzoo.train.schedules import StepsAt
from kzoo.utils.cli import (check_input_size, flag_of, float_between, non_negative_float, non_negative_int,
                            option, option_fields, positive_float, positive_int, run_command)


@dataclasses.dataclass(frozen=True)
class OverFeatTasks:
    """The overfeat recipe's own flags, typed and declared once: the model, and the two tasks
    on its features with the settings of each (their group says which task takes them)."""

    model: str = option("fast", choices=("fast", "accurate"), help="the fast (231 input) or accurate (221 input) model")
    localize: bool = option(False, group="localization", help="then train a box regressor on the frozen features "
                            "and report the localization error (default data: the built-in shapes)")
    boxes: str = option(group="localization", help="with --data-dir: a CSV (image,x1,y1,x2,y2; image matched by file "
                        "name without extension) or a folder of ILSVRC/VOC XML annotations")
    regressor: str = option("class-specific", group="localization", choices=("class-specific", "single"),
                            help="one box per class (the paper's class-specific regression) or one box")
    regressor_epochs: int = option(30, group="localization", rule=positive_int, help="regressor training epochs")
    merge_threshold: float = option(group="localization", rule=non_negative_float,
                                    help="greedy merge threshold on the match score (default: the window size)")
    limit: int = option(group="localization", rule=positive_int, help="use only the first N boxed images "
                        "(--detect: scenes) of each split")
    detect: bool = option(False, group="detection", help="train a detector (a background class, hard negatives, the "
                          "box regressor) on scenes and report its mean AP (default data: built-in scenes)")
    negatives: int = option(8, group="detection", rule=non_negative_int,
                            help="random background windows per image and scale (default 8)")
    rounds: int = option(1, group="detection", rule=non_negative_int, help="rounds of hard-negative bootstrapping")
    hard_negatives: int = option(200, group="detection", rule=positive_int,
                                 help="background windows the classifier scores most as objects, added per round")
    min_score: float = option(0.5, group="detection", rule=float_between(0, 1),
                              help="a window's class probability needed for its box to count (default 0.5)")
    scales: tuple = option((1.0,), group="detection", rule=positive_float, nargs="+",
                          help="image scales the windows run at, in training and detection (default 1)")
    learning_rate: float = option(0.001, group="detection", rule=positive_float,
                                  help="SGD, momentum 0.9 (default 0.001)")
    no_background: bool = option(False, group="detection", help="the ablation: no background class and no negatives")


def _flags(group):
    """(flag, dest) of OverFeatTasks' settings of one task (not the switch that asks for it)."""
    return tuple((flag_of(f), f.name) for f in option_fields(OverFeatTasks)
                 if f.metadata["flag"].group == group and f.name not in ("localize", "detect"))


LOCALIZATION_FLAGS = _flags("localization")
DETECTION_FLAGS = _flags("detection")
# The recipe's run flags that detection takes; it trains on windows in this process, so the others would be ignored.
DETECTION_TAKES = ("data_dir", "run_dir", "epochs", "batch_size", "input_size", "seed", "smoke")
NOT_FOR_DETECTION = tuple((flag_of(f), f.name) for f in option_fields(Run) if f.name not in DETECTION_TAKES) + (
    ("--print-schedule", "print_schedule"), ("--option", "option"))
DETECTION_DEFAULTS = {"epochs": 10, "batch_size": 32, "scenes": (80, 30), "merge_threshold": 0.7}
BUILTIN_MAX_INPUT = 256  # built-in scenes are 3x the window: 768 px at most, ~140 MB for 80 of them
SMOKE = {"epochs": 1, "regressor_epochs": 1, "scenes": (8, 4), "hard_negatives": 10}


def _model(model):
    return f"overfeat_{model}", {}


RECIPE = Recipe(
    name="overfeat",
    paper="Sermanet et al. 2013",
    dataset="imagenet2012",
    model=_model,
    batch_size=128,
    epochs=90,
    momentum=0.6,
    weight_decay=1e-5,
    schedule=lambda model: StepsAt(5e-2, (30, 50, 60, 70, 80), 0.5, unit="epoch"),
    preprocess=PIPELINES["overfeat"],
    sections={
        "batch size": "§3.1",
        "epochs": "not stated; 10 after the last halving",
        "learning rate": "§3.1",
        "momentum": "§3.1",
        "weight decay": "§3.1",
        "preprocessing": "§3.1 (221 for the accurate model); mean colour: not stated",
    },
    demo_crop=80,
    flags=OverFeatTasks,
    flag_groups={"localization": "localization (§4)",
                 "detection": "detection (§4.6; also takes --boxes, --regressor, --regressor-epochs, "
                              "--merge-threshold, --limit, --epochs, --batch-size, --input-size)"},
)

def _given(parser, args, flags):
    return [flag for flag, dest in flags if dest in parser.given]


def _say(flags, what, fix):
    return f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} {what}; {fix}."


def _detection_run_dir(args, name):
    """--run-dir, or runs/overfeat-MODEL-DATA-detect[-no-background][-seedN][-smoke]."""
    data = os.path.basename(os.path.normpath(args.data_dir)) if args.data_dir else "scenes"
    return args.run_dir or os.path.join(
        "runs", f"overfeat-{name}-{data}-detect{'-no-background' if args.no_background else ''}"
                f"{f'-seed{args.seed}' if args.seed else ''}" + ("-smoke" if args.smoke else ""))


def _detection_scenes(args, entry):
    """({"train", "val"} scenes, window size) of --data-dir/--boxes or the built-in scenes, cut
    to --limit and checked to hold every class in both splits."""
    scenes_module = kzoo.data.scenes  # loaded now: --help loads neither Keras nor TF
    if args.data_dir:
        if not args.boxes:
            raise ValueError("--data-dir needs --boxes: a CSV (image,x1,y1,x2,y2,class) or a folder of "
                             "VOC/ILSVRC XML annotations, several objects per image.")
        data = scenes_module.folder_scenes(args.data_dir, args.boxes, seed=args.seed)
        size = args.input_size or entry.default_size
    else:
        size = args.input_size or RECIPE.demo_crop
        train, val = SMOKE["scenes"] if args.smoke else DETECTION_DEFAULTS["scenes"]
        data = scenes_module.builtin_scenes(train, val, size=3 * size, seed=args.seed)  # objects: 0.45-0.75 window
    if args.limit:
        data = {split: scenes_module.Scenes(part.name, part.images[: args.limit], part.objects[: args.limit],
                                            part.class_names) for split, part in data.items()}
    scenes_module.check_splits(data, "--seed or --limit" if args.data_dir else "--limit")
    return data, size


def _check_detect_flags(parser, args):
    """--detect's flags: those of other tasks, and those it would ignore, refused."""
    refused = _given(parser, args, NOT_FOR_DETECTION)
    if args.localize:
        parser.error("--localize and --detect are two tasks; give one.")
    if refused:
        parser.error(_say(refused, "not used by --detect", "the detector trains on windows, in this process"))
    negatives = _given(parser, args, (("--negatives", "negatives"), ("--rounds", "rounds"),
                                      ("--hard-negatives", "hard_negatives")))
    if negatives and args.no_background:
        parser.error(_say(negatives, "for the background class", "--no-background trains without negatives"))
    if args.boxes and not args.data_dir:
        parser.error("--boxes needs --data-dir (the images it boxes).")
    if not args.data_dir and args.input_size and args.input_size > BUILTIN_MAX_INPUT:
        parser.error(f"argument --input-size: {args.input_size} is too large for the built-in scenes (3x the window "
                     f"per side); expected at most {BUILTIN_MAX_INPUT}, or give --data-dir DIR --boxes BOXES.")


def _detect(parser, args):
    """--detect: train the detector on the scenes, save it and its metrics in RUN/detection."""
    name = f"overfeat_{args.model or 'fast'}"
    entry = kzoo.registry.get_entry(name)
    detect = kzoo.tasks.detection  # loaded now: --help loads neither Keras nor TF
    folder = os.path.join(_detection_run_dir(args, name), "detection")
    if os.path.exists(folder):  # a detector is minutes to hours of training: never replaced unasked
        raise ValueError(f"{folder!r} already holds a detector; give another --run-dir, or move that folder away "
                         f"to train again.")
    check_input_size(args.input_size, [name])
    data, size = _detection_scenes(args, entry)
    smoke = SMOKE if args.smoke else {}
    given = parser.given.__contains__  # a flag on the command line beats --smoke, even at its default
    epochs = args.epochs or smoke.get("epochs") or DETECTION_DEFAULTS["epochs"]
    regressor_epochs = smoke.get("regressor_epochs", args.regressor_epochs) if not given("regressor_epochs") \
        else args.regressor_epochs
    hard_negatives = smoke.get("hard_negatives", args.hard_negatives) if not given("hard_negatives") \
        else args.hard_negatives
    threshold = DETECTION_DEFAULTS["merge_threshold"] if args.merge_threshold is None else args.merge_threshold
    scenes = data["train"]
    classes = len(scenes.class_names)
    print(f"Detection on {scenes.name}: {len(scenes.images)} training and {len(data['val'].images)} validation "
          f"images, {classes} classes ({', '.join(scenes.class_names[:10])}{', ...' if classes > 10 else ''}), "
          f"{name} on {size}x{size} windows" + (", no background class (ablation)" if args.no_background else ""))
    model = detect.new_classifier(name, size, classes, not args.no_background, seed=args.seed)
    detector = detect.train_detector(
        model, scenes, scales=tuple(args.scales), epochs=epochs, rounds=args.rounds,
        hard_negatives=hard_negatives, regressor_epochs=regressor_epochs,
        negatives=args.negatives, batch_size=args.batch_size or DETECTION_DEFAULTS["batch_size"],
        learning_rate=args.learning_rate, background=not args.no_background,
        class_specific=args.regressor == "class-specific", seed=args.seed, log=print)
    print(f"Detecting on {len(data['val'].images)} validation images...")
    metrics = detect.detection_metrics(detector, data["val"], tuple(args.scales), args.min_score, threshold)
    settings = {"scales": list(args.scales), "min_score": args.min_score, "merge_threshold": threshold,
                "epochs": epochs, "regressor_epochs": regressor_epochs, "rounds": args.rounds,
                "negatives": args.negatives, "hard_negatives": hard_negatives, "learning_rate": args.learning_rate,
                "seed": args.seed}
    metrics.update(settings, train_images=len(scenes.images), model=name, background=not args.no_background)
    detect.save_detector(detector, folder, name, {}, settings,
                         results=(metrics, detect.results_table(metrics)))
    _report_detection(detect, metrics, scenes.name, folder)
    return 0


def _report_detection(detect, metrics, data, folder):
    print(detect.results_table(metrics))
    print(f"Mean AP {metrics['mean_average_precision']:.1%} (IoU >= 0.5) on {metrics['val_images']} {data} "
          f"validation images; without the merge {metrics['mean_ap_unmerged']:.1%}. Detector and results: {folder}/")


def main(argv=None):
    parser = build_parser(RECIPE)
    return run_command(parser, lambda args: _run(parser, args), argv, checks=_check_flags)


def _check_flags(parser, args):
    """Flags of another task, or that the task given would ignore: refused, not ignored."""
    if args.detect:
        return _check_detect_flags(parser, args)
    given = _given(parser, args, DETECTION_FLAGS)
    if given:
        parser.error(_say(given, "for detection", "add --detect"))
    if args.print_schedule or not args.localize:
        given = _given(parser, args, LOCALIZATION_FLAGS)
        if given:
            parser.error(_say(given, "for localization or detection", "add --localize or --detect"))
    check_recipe_flags(parser, args, RECIPE)


def _run(parser, args):
    if args.detect:
        return _detect(parser, args)
    if args.print_schedule or not args.localize:
        return run_recipe(RECIPE, args)
    run = run_from_args(RECIPE, args)
    dataset = args.dataset or (None if args.data_dir else "shapes")
    source = kzoo.data.sources.load_source(dataset, args.data_dir, args.download, seed=args.seed, boxes=args.boxes)
    missing = [split for split in ("train", "val") if not source.boxed or source.boxed.get(split) is None]
    if missing:  # before hours of classifier training, not after
        raise ValueError(f"dataset {source.name!r} has no boxes for its {' and '.join(missing)} images; "
                         + ("the box file covers no image there." if args.boxes else
                            "give --data-dir DIR --boxes FILE (CSV image,x1,y1,x2,y2 or ILSVRC/VOC XML) "
                            "or use the built-in shapes (no data flags)."))
    train_recipe(RECIPE, run, source)
    run_dir = run_dir_for(RECIPE, run, source)
    metrics = kzoo.tasks.localization.localize_run(run_dir, source, epochs=args.regressor_epochs,
                                                   class_specific=args.regressor == "class-specific",
                                                   threshold=args.merge_threshold, limit=args.limit, seed=args.seed)
    print(f"Localization error {metrics['localization_err']:.2%} (ILSVRC rule: true class in the top 5 and "
          f"IoU >= 0.5), boxes alone {metrics['box_err']:.2%}, mean IoU {metrics['mean_iou']:.3f} on "
          f"{metrics['images']} {source.name} validation images. Regressor: {run_dir}/localization/")


if __name__ == "__main__":
    sys.exit(main())
