"""kzoo's custom layers: backend-neutral (keras.ops only), registered for `.keras` files."""

from kzoo.layers.batch_norm import BatchNormalization
from kzoo.layers.center_view import CenterView
from kzoo.layers.constraints import FilterRMSNorm
from kzoo.layers.grouped_conv import TowerConv2D
from kzoo.layers.lrn import LocalResponseNormalization
from kzoo.layers.offset_pooling import InterleaveOffsets, OffsetMaxPooling2D
from kzoo.layers.padding import CeilPadding2D, ZeroPadShortcut, ceil_mode_output

__all__ = [
    "BatchNormalization",
    "CeilPadding2D",
    "CenterView",
    "FilterRMSNorm",
    "InterleaveOffsets",
    "LocalResponseNormalization",
    "OffsetMaxPooling2D",
    "TowerConv2D",
    "ZeroPadShortcut",
    "ceil_mode_output",
]
