"""ZFNet's visualization tools and the papers' analysis figures, for any kzoo model.

`python -m kzoo.visualize deconv|top9|occlusion|filters|neighbours|responses ...`
"""
