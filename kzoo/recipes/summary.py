"""Build a kzoo model, print its layers and its paper-vs-kzoo numbers, run one forward pass.

    python -m kzoo.recipes.summary alexnet
    python -m kzoo.recipes.summary resnet50 --option stride_placement=v1.5 --layers
"""

import argparse
import sys
import time

from kzoo.utils.cli import model_option


def summarize(name, options=None, layers=False, batch=2, print_fn=print):
    """Build `name` with `options`, print the comparison table; returns the model."""
    import numpy as np

    from kzoo import registry
    from kzoo.utils.report import model_section

    entry = registry.get_entry(name)
    model = entry.builder(**(options or {}))
    if layers:
        model.summary(print_fn=print_fn)
    print_fn(model_section(entry, model))
    if options:
        print_fn(f"(The paper column is the paper's own configuration; {sorted(options)} change it.)")
    shape = (batch, *model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(-1, 1, size=shape).astype("float32")
    model(images)  # build and warm up
    start = time.perf_counter()
    outputs = np.asarray(model(images))
    seconds = time.perf_counter() - start
    print_fn(f"forward pass: {shape} -> {outputs.shape} in {seconds * 1000:.0f} ms "
             f"(random input; the training recipes land with the engine).")
    return model


def main(argv=None):
    from kzoo import registry

    parser = argparse.ArgumentParser(prog="python -m kzoo.recipes.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=registry.list_models(), metavar="MODEL",
                        help="one of: " + ", ".join(registry.list_models()))
    parser.add_argument("--option", type=model_option, action="append", default=[], metavar="KEY=VALUE",
                        help="builder argument, e.g. towers=1, shortcut=A, input_shape=(227,227,3)")
    parser.add_argument("--layers", action="store_true", help="print every layer (Keras summary)")
    args = parser.parse_args(argv)
    try:
        summarize(args.model, dict(args.option), layers=args.layers)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
