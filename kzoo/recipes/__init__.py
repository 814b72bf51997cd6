"""Runnable recipes: `python -m kzoo.recipes.<name>` (see recipes/README.md).

    alexnet, zfnet, overfeat, resnet, resnet_cifar
              train with the paper's schedule (no arguments: a demo on the
              built-in digits; --option KEY=VALUE for the builder's paper
              options; --print-schedule; --help)
    caltech101, caltech256, voc2012
              ZFNet's transfer (§5.2): a new classifier on frozen layers 1-7
    summary   build any registered model and compare it with its paper
"""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
