"""What a trained classifier is trained further for, each on its frozen features:

localization: OverFeat's box regressor and greedy box merging (§4).
detection: OverFeat detection, a background class and dense boxes over scales (§4.6).
transfer: ZFNet's new softmax on frozen features, Caltech-101/256 protocol and Fig. 7 (§5.2).
voc: ZFNet's PASCAL VOC 2012 classification (§5.2).

The test protocols and metrics they report with are kzoo.evaluate's.
"""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
