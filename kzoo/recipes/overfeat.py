"""OverFeat's training (Sermanet et al. 2013, §3.1): `python -m kzoo.recipes.overfeat --model fast|accurate`.

With --localize, after the classifier (trained, or resumed and finished) comes §4:
a box regressor on its frozen layer-5 features, and the ILSVRC localization error.

    python -m kzoo.recipes.overfeat --localize                   # demo: built-in shapes
    python -m kzoo.recipes.overfeat --localize --data-dir DIR --boxes BOXES
"""

import sys

import kzoo
from kzoo.preprocessing import Preprocess
from kzoo.recipes.common import Recipe, build_parser, run_dir_for, run_from_args, train_recipe
from kzoo.recipes.common import main as train_main
from kzoo.train.schedules import StepsAt
from kzoo.utils.cli import non_negative_float, positive_int, quiet_tensorflow


def _arguments(parser):
    parser.add_argument("--model", choices=("fast", "accurate"),
                        help="the fast (231 input) or accurate (221 input) model")
    loc = parser.add_argument_group("localization (§4)")
    loc.add_argument("--localize", action="store_true", help="then train a box regressor on the frozen "
                     "features and report the localization error (default data: the built-in shapes)")
    loc.add_argument("--boxes", help="with --data-dir: a CSV (image,x1,y1,x2,y2; image matched by file "
                     "name without extension) or a folder of ILSVRC/VOC XML annotations")
    loc.add_argument("--regressor", default="class-specific", choices=("class-specific", "single"),
                     help="one box per class (the paper's class-specific regression) or one box")
    loc.add_argument("--regressor-epochs", type=positive_int, default=30, help="regressor training epochs")
    loc.add_argument("--merge-threshold", type=non_negative_float,
                     help="greedy merge threshold on the match score (default: the window size)")
    loc.add_argument("--limit", type=positive_int, help="use only the first N boxed images of each split")


LOCALIZATION_FLAGS = (("--boxes", "boxes"), ("--regressor", "regressor"), ("--regressor-epochs", "regressor_epochs"),
                      ("--merge-threshold", "merge_threshold"), ("--limit", "limit"))


def _model(model="fast"):
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
    preprocess=Preprocess(resize=256, crop=231, flip=True, mean="channel"),
    sections={
        "batch size": "§3.1",
        "epochs": "not stated; 10 after the last halving",
        "learning rate": "§3.1",
        "momentum": "§3.1",
        "weight decay": "§3.1",
        "preprocessing": "§3.1 (221 for the accurate model); mean colour: not stated",
    },
    demo_crop=80,
    add_arguments=_arguments,
)

def main(argv=None):
    parser = build_parser(RECIPE)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    if args.print_schedule or not args.localize:
        given = [flag for flag, dest in LOCALIZATION_FLAGS if getattr(args, dest) != parser.get_default(dest)]
        if given:  # not silently ignored
            parser.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for localization; add --localize.")
        return train_main(RECIPE, argv)
    try:
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
        metrics = kzoo.evaluate.localize.localize_run(run_dir, source, epochs=args.regressor_epochs,
                               class_specific=args.regressor == "class-specific",
                               threshold=args.merge_threshold, limit=args.limit, seed=args.seed)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"Localization error {metrics['localization_err']:.2%} (ILSVRC rule: true class in the top 5 and "
          f"IoU >= 0.5), boxes alone {metrics['box_err']:.2%}, mean IoU {metrics['mean_iou']:.3f} on "
          f"{metrics['images']} {source.name} validation images. Regressor: {run_dir}/localization/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
