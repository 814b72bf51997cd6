"""ZFNet's visualization tools and the papers' analysis figures, for any kzoo model.

`python -m kzoo.visualize deconv|top9|occlusion|filters|neighbours|responses|predictions|invariance|
correspondence ...`
"""

from kzoo.utils import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
