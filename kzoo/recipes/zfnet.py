"""ZFNet's training (Zeiler & Fergus 2013, §3): `python -m kzoo.recipes.zfnet`.

Filter renormalization (RMS radius 0.1) is part of the model (`filter_radius`)
and runs after every update. Training crops are random (AlexNet's scheme, the default of
every recipe); `--crops ten` takes §3's ten fixed sub-crops (corners + centre, flipped or not).
"""

from kzoo.preprocessing import PIPELINES
from kzoo.recipes.common import Recipe, run_module
from kzoo.train.schedules import DivideOnPlateau


def _model():
    return "zfnet", {}


RECIPE = Recipe(
    name="zfnet",
    paper="Zeiler & Fergus 2013",
    dataset="imagenet2012",
    model=_model,
    batch_size=128,
    epochs=70,
    momentum=0.9,
    weight_decay=0.0,
    schedule=lambda model: DivideOnPlateau(1e-2, factor=0.1, times=None),
    preprocess=PIPELINES["zfnet"],
    sections={
        "batch size": "§3",
        "epochs": "§3: stopped after 70 epochs",
        "learning rate": "§3: annealed by hand on plateau; here /10 after 3 epochs without gain",
        "momentum": "§3",
        "weight decay": "§3 states none",
        "preprocessing": "§3 (its ten fixed crops: --crops ten)",
    },
    demo_crop=64,
)

if __name__ == "__main__":
    run_module(RECIPE)
