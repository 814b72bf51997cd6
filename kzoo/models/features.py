"""Feature extraction: a model's intermediate maps as a dict, with the model's own weights.

    features = kzoo.feature_extractor(kzoo.alexnet())
    maps = features(images)          # {"relu1": (N, 55, 55, 96), ..., "relu5": (N, 13, 13, 256)}

As torchvision's `create_feature_extractor`, timm's `features_only` and keras-hub's
`pyramid_outputs`. The default layers are each stage's output:

- AlexNet, ZFNet, OverFeat: the rectified output of every convolution, `relu1`..`relu5`
  (`relu6` for OverFeat accurate), after the ReLU and before any LRN or pooling. These are
  the maps ZFNet's deconvnet, occlusion and top-9 figures show and the sizes the papers'
  tables give (AlexNet 55x55x96, 27x27x256, 13x13x384, 13x13x384, 13x13x256). ZFNet's
  per-layer transfer (Table 6) uses the pooled maps instead: name them
  (`kzoo.tasks.transfer.per_layer_names`).
- ResNets and their plain nets: the stem (`conv1_relu`, before the max pooling) and the
  last block of every stage (`conv2_blockN_out`.. `conv5_blockN_out`; CIFAR nets end at
  conv4).

Keras only (no TensorFlow): it runs under every backend.
"""

import re

import keras

from kzoo.layers import TowerConv2D

_CONV = re.compile(r"conv(\d+)")
_RELU = re.compile(r"relu(\d+)")
_BLOCK_OUT = re.compile(r"conv(\d+)_block(\d+)_out")


def get_layer(model, name):
    """`model`'s layer `name`, or a ValueError listing the valid names."""
    names = [layer.name for layer in model.layers]
    if name not in names:
        raise ValueError(f"{model.name!r} has no layer {name!r}; valid layers: {', '.join(names)}.")
    return model.get_layer(name)


def stage_layers(model):
    """The names of `model`'s stage outputs (the default of `feature_extractor`), in graph
    order; [] for a model without kzoo's layer names."""
    layers = {layer.name: layer for layer in model.layers}
    convs = {m[1] for name, layer in layers.items()
             if (m := _CONV.fullmatch(name)) and isinstance(layer, (keras.layers.Conv2D, TowerConv2D))}
    rectified = [name for name, layer in layers.items()
                 if (m := _RELU.fullmatch(name)) and m[1] in convs and len(layer.output.shape) == 4]
    if rectified:
        return rectified
    last_block = {}  # stage -> its last block's output (dicts keep graph order)
    for name in layers:
        if m := _BLOCK_OUT.fullmatch(name):
            last_block[m[1]] = name
    return (["conv1_relu"] if last_block and "conv1_relu" in layers else []) + list(last_block.values())


def feature_extractor(model, layers=None):
    """A Keras model from `model`'s input to {layer name: that layer's output}.

    The layers are `model`'s own (no copy): training or loading weights into `model`
    changes the extractor's outputs. `layers`: layer names (a list, or one name);
    default: each stage's output (`stage_layers`), see the module docstring.
    """
    if layers is None:
        layers = stage_layers(model)
        if not layers:
            raise ValueError(f"{model.name!r} has no stages kzoo knows (AlexNet/ZFNet/OverFeat's conv1..relu5, "
                             f"ResNet's conv1_relu and convN_blockM_out); name the layers: "
                             f"feature_extractor(model, layers=[...]).")
    elif isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty; name at least one layer, or pass None for the stage outputs.")
    twice = sorted({name for name in layers if layers.count(name) > 1})
    if twice:
        raise ValueError(f"layers names {', '.join(map(repr, twice))} more than once; each key appears once.")
    outputs = {name: get_layer(model, name).output for name in layers}
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_features")
