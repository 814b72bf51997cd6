"""AlexNet's training (Krizhevsky et al. 2012, §4-§5): `python -m kzoo.recipes.alexnet`."""

from kzoo.preprocessing import PIPELINES
from kzoo.recipes.common import Recipe, run_module
from kzoo.train.schedules import DivideOnPlateau


def _model():
    return "alexnet", {}


RECIPE = Recipe(
    name="alexnet",
    paper="Krizhevsky, Sutskever & Hinton 2012",
    dataset="imagenet2012",
    model=_model,
    batch_size=128,
    epochs=90,
    momentum=0.9,
    weight_decay=5e-4,
    schedule=lambda model: DivideOnPlateau(0.01, factor=0.1, times=3),
    preprocess=PIPELINES["alexnet"],
    sections={
        "batch size": "§5",
        "epochs": "§5: ~90 cycles",
        "learning rate": "§5; patience (3 epochs) is ours: the paper gives no rule",
        "momentum": "§5",
        "weight decay": "§5 update rule",
        "preprocessing": "§2, §4.1",
    },
    # The paper's biases of 1 make the short demo diverge in its first epoch; Caffe's
    # initialisation (biases 0.1, fc6/fc7 std 0.005) learns the digits in ~8 epochs.
    demo_crop=96,
    demo_options={"init": "caffe"},
)

if __name__ == "__main__":
    run_module(RECIPE)
