"""Runnable recipes: `python -m kzoo.recipes.<name>` (see recipes/README.md).

    alexnet, zfnet, overfeat, resnet, resnet_cifar
              train with the paper's schedule (no arguments: a demo on the
              built-in digits; --option KEY=VALUE for the builder's paper
              options; --print-schedule; --help)
    summary   build any registered model and compare it with its paper
"""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
