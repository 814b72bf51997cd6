"""ZFNet's caltech256 transfer (§5.2): `python -m kzoo.recipes.caltech256 --model zfnet --weights PATH --data-dir DIR`."""

from kzoo.recipes.caltech import run_module

DATASET = "caltech256"

if __name__ == "__main__":
    run_module(DATASET)
