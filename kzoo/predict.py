"""`python -m kzoo.predict`: the top classes of your own images under a trained model.

    python -m kzoo.predict seven.png --model resnet20 --weights digits
    python -m kzoo.predict photos/ --run-dir runs/alexnet-alexnet-digits --top 3
    python -m kzoo.predict cat.jpg --model resnet50 --weights imagenet

Each image is prepared exactly as the model was validated (kzoo.load: the run's or
the registered weights' resize, centre crop and mean); a weights file needs
--mean R G B. Folders are searched for images (JPEG, PNG, BMP, GIF).
"""

import argparse
import json
import sys

from kzoo.inference import load
from kzoo.data import images
from kzoo.utils.cli import (ArgumentParser, add_verbose_flag, float_between, model_weights, positive_int,
                            run_command)

def predict(paths, trained, top=5, batch_size=32):
    """[(path, [(class index, class name, probability), ...]), ...] for image files `paths`."""
    rows = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        probabilities = trained.predict([images.read(p) for p in chunk], batch_size=batch_size)
        rows += list(zip(chunk, trained.decode(probabilities, top=top)))
    return rows


def main(argv=None):
    parser = ArgumentParser(prog="python -m kzoo.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--run-dir", help="a training run (model, weights, preprocessing, class names)")
    parser.add_argument("--model", help="a registered model name (with --weights)")
    parser.add_argument("--weights", help="weights for --model: a registered name (digits, imagenet) or a "
                        ".weights.h5 file; none: random weights")
    parser.add_argument("--mean", type=float_between(0, 255), nargs=3, metavar=("R", "G", "B"),
                        help="mean colour a --weights file expects")
    parser.add_argument("--top", type=positive_int, default=5, help="classes per image (default 5)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image instead of a table")
    add_verbose_flag(parser)
    return run_command(parser, _main, argv)


def _main(args):
    trained, rows = run(args)
    if not args.json:  # what the model expects: the first thing to check when its answers surprise
        print(f"{trained.name} ({trained.origin}), trained on {trained.dataset or 'nothing: random weights'}.")
    for path, classes in rows:
        if args.json:
            print(json.dumps({"image": path, "top": [{"index": i, "name": n, "probability": p}
                                                     for i, n, p in classes]}))
            continue
        print(path)
        print("  probability  class")
        for index, name, probability in classes:
            print(f"  {probability:11.2%}  {name if name == str(index) else f'{name} ({index})'}")


def run(args):
    if bool(args.run_dir) == bool(args.model):
        raise ValueError("give either --run-dir RUN or --model NAME --weights WEIGHTS.")
    if args.run_dir and (args.weights or args.mean):
        raise ValueError(f"{'--weights' if args.weights else '--mean'} goes with --model; --run-dir "
                         f"{args.run_dir} brings its own.")
    paths = images.files(args.images)
    if args.run_dir:
        trained = load(run_dir=args.run_dir)
    else:
        trained = load(args.model, weights=model_weights(args.model, args.weights), mean=args.mean)
    return trained, predict(paths, trained, top=args.top)


if __name__ == "__main__":
    sys.exit(main())
