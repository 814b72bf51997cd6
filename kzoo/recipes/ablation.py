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
import dataclasses
import sys

import kzoo
from kzoo.recipes.common import Run
from kzoo.tune.studies import STUDIES, TUNERS
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_input_size, flags_from, folder, option,
                            positive_int, run_command)


# The Run flags a study's trials take from the command line (the rest each trial sets).
ABLATION_FLAGS = ("dataset", "data_dir", "download", "val_split", "epochs", "batch_size", "input_size", "seed",
                  "log_every", "steps_per_epoch")


@dataclasses.dataclass(frozen=True)
class AblationOptions:
    """The study's own flags, declared once; the trials' run settings are Run's (ABLATION_FLAGS)."""

    study: str = option(positional=True, choices=tuple(sorted(STUDIES)), help="the paper's ablation to run")
    tuner: str = option("grid", choices=TUNERS, help="grid (default: every row) or a search")
    space: str = option("rows", choices=("rows", "free"),
                        help="rows: exactly the paper's rows; free: every combination of the study's knobs")
    max_trials: int = option(rule=positive_int, help="stop after this many trials (grid: all rows)")
    out: str = option(rule=folder, help="study folder (default runs/ablation-<study>)")


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.recipes.ablation", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, AblationOptions, only=("study", "tuner", "space", "max_trials"))
    # The trials' run settings: the recipes' own flags, declared once (kzoo.recipes.common.Run);
    # each trial sets its model, options and folder, and a seed study's rows their seed.
    add_flags(parser, Run, only=ABLATION_FLAGS)
    add_flags(parser, AblationOptions, only=("out",))
    add_verbose_flag(parser)
    return parser


def main(argv=None):
    def checks(parser, args):
        if args.tuner == "hyperband" and args.max_trials is not None:  # keras-tuner's Hyperband has no trial cap
            parser.error("--max-trials does not apply to --tuner hyperband (its budget is --epochs); leave it out.")

    def run(args):
        check_input_size(args.input_size, sorted({row.model for row in STUDIES[args.study].rows}))
        kzoo.tune.search.run_study(args.study, flags_from(Run, args), args.tuner, args.space, args.max_trials,
                                   args.out)

    return run_command(build_parser(), run, argv, checks=checks)


if __name__ == "__main__":
    sys.exit(main())
