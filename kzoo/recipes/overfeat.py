"""OverFeat's training (Sermanet et al. 2013, §3.1): `python -m kzoo.recipes.overfeat --model fast|accurate`."""

from kzoo.data.transforms import Preprocess
from kzoo.recipes.common import Recipe, run_module
from kzoo.train.schedules import StepsAt


def _arguments(parser):
    parser.add_argument("--model", default="fast", choices=("fast", "accurate"),
                        help="the fast (231 input) or accurate (221 input) model")


def _model(args):
    return f"overfeat_{args.model}", {}


RECIPE = Recipe(
    name="overfeat",
    paper="Sermanet et al. 2013",
    model=_model,
    batch_size=128,
    epochs=90,
    momentum=0.6,
    weight_decay=1e-5,
    schedule=lambda model: StepsAt(5e-2, (30, 50, 60, 70, 80), 0.5, unit="epoch"),
    preprocess=Preprocess(resize=256, crop=231, flip=True, mean="channel"),
    sections={
        "batch size": "§3.1",
        "epochs": "not stated; 10 after the last halving",
        "learning rate": "§3.1",
        "momentum": "§3.1",
        "weight decay": "§3.1",
        "preprocessing": "§3.1 (221 for the accurate model); mean colour: not stated",
    },
    demo_crop=80,
    add_arguments=_arguments,
)

if __name__ == "__main__":
    run_module(RECIPE)
