"""ZFNet's caltech101 transfer (§5.2): `python -m kzoo.recipes.caltech101 --model zfnet --weights PATH --data-dir DIR`."""

from kzoo.recipes.caltech import run_module

DATASET = "caltech101"

if __name__ == "__main__":
    run_module(DATASET)
