"""Small shared helpers: the multiply-add counter and model measurements."""

from kzoo.utils.flops import count_macs, layer_macs

__all__ = ["count_macs", "layer_macs"]
