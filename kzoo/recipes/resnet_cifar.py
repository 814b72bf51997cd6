"""ResNet's CIFAR-10 training (He et al. 2015, §4.2): `python -m kzoo.recipes.resnet_cifar --depth 110`."""

import dataclasses

from kzoo.preprocessing import PIPELINES
from kzoo.recipes.common import Recipe, run_module
from kzoo.train.schedules import StepsAt, WarmupUntilError
from kzoo.utils.cli import option

DEPTHS = (20, 32, 44, 56, 110, 1202)


@dataclasses.dataclass(frozen=True)
class CifarFlags:
    """The model this recipe trains, chosen on the command line (declared once: `_model` takes them)."""

    depth: int = option(20, rule=int, choices=DEPTHS, help="6n+2 layers")
    plain: bool = option(False, help="plain nets (Fig. 6), depth up to 110")


def _model(depth, plain):
    if plain and depth == 1202:
        raise ValueError("--plain exists for --depth 20, 32, 44, 56 and 110 (Fig. 6); not 1202.")
    return f"{'plain' if plain else 'resnet'}{depth}", {}


def _schedule(model):
    steps = StepsAt(0.1, (32_000, 48_000), 0.1, unit="step", stop_at=64_000)
    if model.endswith(("110", "1202")):
        return WarmupUntilError(0.01, steps, below=0.8)  # §4.2: "to warm up the training"
    return steps


RECIPE = Recipe(
    name="resnet_cifar",
    paper="He, Zhang, Ren & Sun 2015, §4.2",
    dataset="cifar10",
    model=_model,
    batch_size=128,
    epochs=200,
    momentum=0.9,
    weight_decay=1e-4,
    schedule=_schedule,
    preprocess=PIPELINES["resnet_cifar"],
    sections={
        "batch size": "§4.2",
        "epochs": "§4.2: stop at 64k iterations (~164 epochs)",
        "learning rate": "§4.2 (warm-up for 110 and 1202 layers)",
        "momentum": "§4.2",
        "weight decay": "§4.2",
        "preprocessing": "§4.2",
    },
    demo_crop=32,
    demo_epochs=5,
    flags=CifarFlags,
)

if __name__ == "__main__":
    run_module(RECIPE)
