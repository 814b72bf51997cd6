"""Exact converters from public checkpoints to kzoo models (outputs unchanged).

    python -m kzoo.weights convert keras-applications resnet50 resnet50_weights_tf_dim_ordering_tf_kernels.h5 OUT
    python -m kzoo.weights convert caffe alexnet bvlc_alexnet.caffemodel OUT
"""

import numpy as np

import keras


def _fold_bias_into_bn(conv_bias, bn_weights, source_eps, target_eps):
    """BN(x + b) with the source's epsilon == BN'(x) with the target's: the bias moves
    into the moving mean, the epsilon difference into gamma."""
    gamma, beta, mean, var = bn_weights
    gamma = gamma * np.sqrt(var + target_eps) / np.sqrt(var + source_eps)
    return [gamma, beta, mean - conv_bias, var]


def keras_applications_resnet(source, model_name, classifier_activation="softmax"):
    """keras.applications ResNet50/101/152 (a model, or its .h5 weights file) -> kzoo's
    resnet50/101/152 (v1, shortcut B). Their convolutions carry biases, kzoo's (like the
    paper's) do not: each bias is folded into the batch normalization that follows."""
    import kzoo

    apps = {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101,
            "resnet152": keras.applications.ResNet152}
    if model_name not in apps:
        raise ValueError(f"keras.applications converts to {sorted(apps)}, not {model_name!r}.")
    if isinstance(source, keras.Model):
        src = source
    else:
        src = apps[model_name](weights=None)
        src.load_weights(source)
    target = kzoo.create_model(model_name, classes=src.output_shape[-1], classifier_activation=classifier_activation)
    names = {layer.name for layer in src.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([src.get_layer(_need(names, layer.name)).get_weights()[0]])
        elif isinstance(layer, keras.layers.BatchNormalization):
            conv = layer.name[: -len("_bn")] + "_conv"
            bias = src.get_layer(_need(names, conv)).get_weights()[1]
            bn = src.get_layer(_need(names, layer.name))
            layer.set_weights(_fold_bias_into_bn(bias, bn.get_weights(), bn.epsilon, layer.epsilon))
        elif layer.name == "fc":
            layer.set_weights(src.get_layer(_need(names, "predictions")).get_weights())
        else:
            raise ValueError(f"no rule to convert kzoo layer {layer.name!r} ({type(layer).__name__}).")
    return target


def _need(names, name):
    if name not in names:
        raise ValueError(f"the source model has no layer {name!r}; is it the matching architecture?")
    return name


CONVERTERS = {"keras_applications_resnet": keras_applications_resnet}
