"""The papers' architecture studies as keras-tuner searches.

    python -m kzoo.recipes.ablation zfnet-table3             # the 12 rows, on the built-in digits
    python -m kzoo.recipes.ablation resnet-cifar-depth --dataset cifar10 --data-dir DIR
    python -m kzoo.recipes.ablation alexnet-design --space free --tuner bayesian --max-trials 20
    python -m kzoo.recipes.ablation resnet-cifar-fig6 --dataset cifar10 --data-dir DIR --val-split 5000

Each trial trains with the study's recipe (its schedule and pipeline; on the built-in
data its demo sizes). Rerunning the same command resumes: finished trials are kept.
The settings are recorded in OUT/study.json; a rerun with other ones (--epochs,
--val-split, --seed, ...) is refused: give it another --out.
"""

import argparse
import sys

import kzoo
from kzoo.recipes.common import Run
from kzoo.tune.studies import STUDIES, TUNERS
from kzoo.utils.cli import ArgumentParser, add_verbose_flag, check_input_size, non_negative_int, positive_int, quiet_tensorflow


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.recipes.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--tuner", default="grid", choices=TUNERS, help="grid (default: every row) or a search")
    parser.add_argument("--space", default="rows", choices=("rows", "free"),
                        help="rows: exactly the paper's rows; free: every combination of the study's knobs")
    parser.add_argument("--max-trials", type=positive_int, help="stop after this many trials (grid: all rows)")
    parser.add_argument("--epochs", type=positive_int, help="epochs per trial (default: the recipe's, or its demo's)")
    parser.add_argument("--steps-per-epoch", type=positive_int, help="limit each epoch to N steps")
    parser.add_argument("--batch-size", type=positive_int, help="global batch (default: the recipe's)")
    parser.add_argument("--input-size", type=positive_int,
                        help="model input size, at least every row's minimum (default: the recipe's)")
    parser.add_argument("--dataset", help="tfds name (default: the built-in digits)")
    parser.add_argument("--data-dir", help="tfds data_dir, or a folder of class sub-folders")
    parser.add_argument("--download", action="store_true", help="let tfds download --dataset")
    parser.add_argument("--val-split", type=positive_int, metavar="N",
                        help="validate each trial on N held-out training images (the recipes' --val-split; "
                             "ResNet §4.2: 5000 of CIFAR-10's 50k), leaving the data's own validation/test set unused")
    parser.add_argument("--log-every", type=non_negative_int,
                        help="each trial's steps.csv (the curves' thin lines) every N steps (default: the recipes')")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the trials (a seed study's rows set their own) and of the data's split")
    parser.add_argument("--out", help="study folder (default runs/ablation-<study>)")
    add_verbose_flag(parser)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    if args.tuner == "hyperband" and args.max_trials is not None:  # keras-tuner's Hyperband has no trial cap
        parser.error("--max-trials does not apply to --tuner hyperband (its budget is --epochs); leave it out.")
    try:
        check_input_size(args.input_size, sorted({row.model for row in STUDIES[args.study].rows}))
        # each trial sets its model, options and folder (a seed study's rows, their seed)
        base = Run(dataset=args.dataset, data_dir=args.data_dir, download=args.download, epochs=args.epochs,
                   batch_size=args.batch_size, input_size=args.input_size, steps_per_epoch=args.steps_per_epoch,
                   val_split=args.val_split, log_every=args.log_every, seed=args.seed)
        kzoo.tune.search.run_study(args.study, base, args.tuner, args.space, args.max_trials, args.out)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
