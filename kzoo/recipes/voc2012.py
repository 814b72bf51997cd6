"""ZFNet's PASCAL VOC 2012 transfer (§5.2): layers 1-7 frozen, a new 20-way classifier
trained on the train split, average precision per class and its mean on val.

    python -m kzoo.recipes.voc2012 --model zfnet --weights W.weights.h5 --data-dir VOCdevkit
    python -m kzoo.recipes.voc2012 --run-dir runs/zfnet-zfnet-imagenet2012 --loss logistic

--data-dir: a VOC devkit folder (JPEGImages/, Annotations/, ImageSets/Main/train.txt
and val.txt; or VOCdevkit/VOC2012 under it) or a tfds data_dir with voc/2012
prepared (default: tfds' own data_dir). Nothing is downloaded. The paper's 79.0 mean
AP is on the test server, whose labels are not public: ours is on val.
"""

import argparse
import dataclasses
import os
import sys

import kzoo  # kzoo.tasks.voc (Keras) when the protocol runs: --help stays light
from kzoo.data.voc import LOSSES, load_voc
from kzoo.recipes.backbone import Backbone, check_model_flags, load_trained, mean_colour
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, flags_from, folder, non_negative_int, option,
                            positive_float, run_command)


@dataclasses.dataclass(frozen=True)
class VocOptions(Backbone):
    """One run of ZFNet's PASCAL VOC 2012 protocol, typed: each flag declared once."""

    data_dir: str = option(rule=folder, help="a VOC devkit folder, or a tfds data_dir with voc/2012 prepared "
                           "(default: tfds' data_dir)")
    loss: str = option("softmax", choices=LOSSES, help="softmax: the paper's 20-way softmax, each image's target "
                       "spread over its classes (default); logistic: one sigmoid per class")
    layer: str = option(help="feature layer (default: the last hidden ReLU, relu7)")
    C: float = option(1.0, rule=positive_float, help="inverse L2 strength (default 1)")
    seed: int = option(0, rule=non_negative_int, help="seed of the classifier and of the mean colour's images")
    out: str = option(rule=folder, help="results folder (default runs/voc2012-<model>)")


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.recipes.voc2012", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, VocOptions)
    add_verbose_flag(parser)
    return parser


def run(options):
    """The protocol's results for `options` (VocOptions)."""
    check_model_flags(options)  # before reading thousands of annotations
    data = load_voc(options.data_dir)
    for split, collection in data.items():
        print(f"voc2012 {split}: {len(collection.images)} images.")
    trained, identity, _ = load_trained(options, lambda: mean_colour(data["train"], seed=options.seed))
    out = options.out or os.path.join("runs", f"voc2012-{trained.name}")
    results = kzoo.tasks.voc.run_voc(trained, data, options.layer, options.loss, options.C, options.seed, out, identity)
    print(kzoo.tasks.voc.results_table(results))
    print(f"Results: {out}/results.json, {out}/results.md")
    return results


def main(argv=None):
    return run_command(build_parser(), lambda args: run(flags_from(VocOptions, args)), argv)


if __name__ == "__main__":
    sys.exit(main())
