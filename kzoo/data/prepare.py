"""`python -m kzoo.data.prepare`: resize a folder of class images once and pack it into shards.

    python -m kzoo.data.prepare --data-dir DIR --out SHARDS --short-side 256 --center 256   # AlexNet, ZFNet
    python -m kzoo.data.prepare --data-dir DIR --out SHARDS --short-side 256                # OverFeat
    python -m kzoo.data.prepare --data-dir DIR --out SHARDS --short-side 0                  # ResNet (scale aug.)

AlexNet §2 down-sampled every image to 256 pixels before training; this does the
same, once: DIR's training and validation images (DIR/train/<class>/*, DIR/val/<class>/*,
or DIR/<class>/* split by --val-fraction and --seed, as the recipes split it) go
through the recipes' own first step (the antialiased resize of the shorter side,
rounded to 8 bits; then the centre square) into sharded TFRecord files with a
manifest.json (classes, counts, the resize, the encoding, a sha256 per shard). Then
give SHARDS as any recipe's --data-dir: it trains exactly as on DIR (bit for bit,
with a lossless --encoding), without decoding and resizing full-size JPEGs every
epoch. An interrupted run resumes where it stopped when rerun; an output made with
other settings is never overwritten.
"""

import argparse
import dataclasses
import os
import sys

from kzoo import data
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_flags, flags_from, folder,
                            fraction_below, int_between, non_negative_int, option, positive_int, run_command)


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    """One preparation, typed: each flag declared once; its settings are what
    kzoo.data.shards.prepare takes (and records in manifest.json)."""

    data_dir: str = option(rule=folder, required=True, help="a folder of class sub-folders (optionally train/ and "
                           "val/)")
    out: str = option(rule=folder, required=True, help="the folder the shards and manifest.json go to (new, or one "
                      "this command started: a rerun resumes it)")
    short_side: int = option(256, rule=non_negative_int, help="resize the shorter side to this (default 256, AlexNet "
                             "§2); 0 keeps the images as they are (what ResNet's random 256-480 rescaling needs)")
    center: int = option(rule=positive_int, help="keep the centre square of this side (AlexNet and ZFNet: 256); "
                         "default: the whole resized image")
    encoding: str = option(choices=("png", "raw", "jpeg", "original"),
                           help="how images are stored: raw (the uint8 array, default: decoding is a copy, the "
                                "fastest), png (lossless, ~0.7x raw's size for photographs but ~2.5x the training "
                                "pipeline's time), jpeg (smaller still, lossy: training no longer equals the "
                                "folder's), original (the files' own bytes; default with --short-side 0)")
    quality: int = option(95, rule=int_between(1, 100), help="JPEG quality for --encoding jpeg")
    images_per_shard: int = option(1024, rule=positive_int, help="images per shard file (default 1024: about "
                                   "200-270 MB of 256-pixel raw images)")
    val_fraction: float = option(0.1, rule=fraction_below(1), help="validation share when DIR has no train/ and val/ "
                                 "(the recipes' 0.1)")
    seed: int = option(0, rule=non_negative_int, help="the split's seed when DIR has no train/ and val/ (the "
                       "recipe's --seed)")
    quiet: bool = option(False, help="no progress bar")

    def __post_init__(self):
        check_flags(self)


def build_parser():
    parser = ArgumentParser(prog="python -m kzoo.data.prepare", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, PrepareOptions)
    add_verbose_flag(parser)
    return parser


def main(argv=None):
    return run_command(build_parser(), lambda args: _prepare(flags_from(PrepareOptions, args)), argv, checks=_check_flags, errors=(OSError,),
                       interrupted=lambda args: f"the complete shards in {args.out} are kept; rerun the same command "
                                                f"to finish.")


def _check_flags(parser, args):
    if "quality" in parser.given and args.encoding != "jpeg":
        parser.error("--quality is the JPEG quality of --encoding jpeg; add --encoding jpeg or leave --quality out.")
    split = [flag for flag, dest in (("--val-fraction", "val_fraction"), ("--seed", "seed")) if dest in parser.given]
    if split and os.path.isdir(os.path.join(args.data_dir, "train")):
        parser.error(f"{args.data_dir}/train/ and its val/ are the split: {', '.join(split)} would be ignored; "
                     f"leave {'it' if len(split) == 1 else 'them'} out.")


def _prepare(options):
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in ("data_dir", "out", "quiet")}
    try:
        data.shards.prepare(options.data_dir, options.out, **settings, verbose=0 if options.quiet else 1)
    except (ValueError, FileNotFoundError):
        raise
    except OSError as err:  # e.g. an --out that cannot be written, a full disk
        raise OSError(f"{err}; complete shards are kept, rerun once fixed.") from err


if __name__ == "__main__":
    sys.exit(main())
