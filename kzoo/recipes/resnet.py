"""ResNet's ImageNet training (He et al. 2015, §3.4): `python -m kzoo.recipes.resnet --depth 50`."""

import dataclasses

from kzoo.preprocessing import PIPELINES
from kzoo.recipes.common import Recipe, run_module
from kzoo.train.schedules import DivideOnPlateau
from kzoo.utils.cli import option


@dataclasses.dataclass(frozen=True)
class ResNetFlags:
    """The model this recipe trains, chosen on the command line (declared once: `_model` takes them)."""

    depth: int = option(50, rule=int, choices=(18, 34, 50, 101, 152), help="layers (Table 1; default 50)")
    shortcut: str = option(choices=("A", "B", "C"), help="§3.3 options")
    plain: bool = option(False, help="plain-18/34: no shortcuts (§4.1)")


def _model(depth, shortcut, plain):
    if plain:
        if shortcut:  # given: plain nets have none, so it would be dropped
            raise ValueError(f"--shortcut {shortcut} is for residual nets; --plain nets have no shortcuts: drop "
                             f"--shortcut.")
        if depth not in (18, 34):
            raise ValueError(f"--plain exists for --depth 18 and 34 only (§4.1); got {depth}.")
        return f"plain{depth}", {}
    return f"resnet{depth}", {"shortcut": shortcut or "B"}  # §3.3's B unless --shortcut says otherwise


RECIPE = Recipe(
    name="resnet",
    paper="He, Zhang, Ren & Sun 2015",
    dataset="imagenet2012",
    model=_model,
    batch_size=256,
    epochs=120,
    momentum=0.9,
    weight_decay=1e-4,
    schedule=lambda model: DivideOnPlateau(0.1, factor=0.1, times=None, stop_at=600_000),
    preprocess=PIPELINES["resnet"],
    sections={
        "batch size": "§3.4",
        "epochs": "§3.4: 60e4 iterations (~120 epochs at 256)",
        "learning rate": "§3.4",
        "momentum": "§3.4",
        "weight decay": "§3.4",
        "preprocessing": "§3.4; mean colour, as the scale varies per image",
    },
    demo_crop=32,
    flags=ResNetFlags,
)

if __name__ == "__main__":
    run_module(RECIPE)
