"""`python -m kzoo.predict`: the top classes of your own images under a trained model.

    python -m kzoo.predict seven.png --model resnet20 --weights digits
    python -m kzoo.predict photos/ --run-dir runs/alexnet-alexnet-digits --top 3
    python -m kzoo.predict cat.jpg --model resnet50 --weights imagenet

Each image is prepared exactly as the model was validated (kzoo.load: the run's or
the registered weights' resize, centre crop and mean); a weights file needs
--mean R G B. Folders are searched for images (JPEG, PNG, BMP, GIF).
"""

import argparse
import dataclasses
import json
import sys

from kzoo.inference import load
from kzoo.data import images
from kzoo.utils.cli import (ArgumentParser, add_flags, add_verbose_flag, check_flags, flags_from, float_between,
                            folder, model_weights, option, positive_int, run_command)
from kzoo.utils.precision import PRECISIONS


def predict(paths, trained, top=5, batch_size=32):
    """[(path, [(class index, class name, probability), ...]), ...] for image files `paths`."""
    rows = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        probabilities = trained.predict([images.read(p) for p in chunk], batch_size=batch_size)
        rows += list(zip(chunk, trained.decode(probabilities, top=top)))
    return rows


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """One `python -m kzoo.predict` call, typed: each flag declared once."""

    images: list = option(positional=True, nargs="+", help="image files or folders")
    run_dir: str = option(rule=folder, help="a training run (model, weights, preprocessing, class names)")
    model: str = option(help="a registered model name (with --weights)")
    weights: str = option(help="weights for --model: a registered name (digits, imagenet) or a .weights.h5 file; "
                          "none: random weights")
    mean: list = option(rule=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects")
    precision: str = option(choices=PRECISIONS, help="the precision the model computes in (default: a run's own, "
                            "else float32)")
    top: int = option(5, rule=positive_int, help="classes per image (default 5)")
    json: bool = option(False, help="one JSON object per image instead of a table")

    def __post_init__(self):
        check_flags(self)


def main(argv=None):
    parser = ArgumentParser(prog="python -m kzoo.predict", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, PredictOptions)
    add_verbose_flag(parser)
    return run_command(parser, lambda args: _main(flags_from(PredictOptions, args)), argv)


def _main(options):
    trained, rows = run(options)
    if not options.json:  # what the model expects: the first thing to check when its answers surprise
        print(f"{trained.name} ({trained.origin}), trained on {trained.dataset or 'nothing: random weights'}.")
    for path, classes in rows:
        if options.json:
            print(json.dumps({"image": path, "top": [{"index": i, "name": n, "probability": p}
                                                     for i, n, p in classes]}))
            continue
        print(path)
        print("  probability  class")
        for index, name, probability in classes:
            print(f"  {probability:11.2%}  {name if name == str(index) else f'{name} ({index})'}")


def run(options):
    """(the trained model, [(path, its top classes)]) of `options` (PredictOptions)."""
    if bool(options.run_dir) == bool(options.model):
        raise ValueError("give either --run-dir RUN or --model NAME --weights WEIGHTS.")
    if options.run_dir and (options.weights or options.mean):
        raise ValueError(f"{'--weights' if options.weights else '--mean'} goes with --model; --run-dir "
                         f"{options.run_dir} brings its own.")
    paths = images.files(options.images)
    if options.run_dir:
        trained = load(run_dir=options.run_dir, dtype=options.precision)
    else:
        trained = load(options.model, weights=model_weights(options.model, options.weights),
                       mean=options.mean, dtype=options.precision)
    return trained, predict(paths, trained, top=options.top)


if __name__ == "__main__":
    sys.exit(main())
