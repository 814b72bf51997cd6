"""Runnable recipes: `python -m kzoo.recipes.<name>`.

Available now:
    summary   build any registered model and compare it with its paper
              (`python -m kzoo.recipes.summary alexnet`).

The training recipes (alexnet, zfnet, overfeat, resnet, resnet_cifar) land with
the training engine; see `recipes/README.md` at the top of the repository.
"""
