"""Exact converters from public checkpoints to kzoo models (outputs unchanged).

    python -m kzoo.weights convert keras-applications resnet50 resnet50_weights_tf_dim_ordering_tf_kernels.h5 OUT
    python -m kzoo.weights convert caffe alexnet bvlc_alexnet.caffemodel OUT
    python -m kzoo.weights convert torchvision resnet50 resnet50-0676ba61.pth OUT
"""

import os
import re

import keras
import numpy as np

import kzoo
from kzoo import weights
from kzoo.weights import caffe, record, torch_pickle


def _fold_bias_into_bn(conv_bias, bn_weights, source_eps, target_eps):
    """BN(x + b) with the source's epsilon == BN'(x) with the target's: the bias moves
    into the moving mean, the epsilon difference into gamma."""
    gamma, beta, mean, var = bn_weights
    gamma = gamma * np.sqrt(var + target_eps) / np.sqrt(var + source_eps)
    return [gamma, beta, mean - conv_bias, var]


def keras_applications_resnet(source, model_name, classifier_activation="softmax"):
    """keras.applications ResNet50/101/152 (a model, or its .h5 weights file) -> kzoo's
    resnet50/101/152 (v1, shortcut B). Their convolutions carry biases, kzoo's (like the
    paper's) do not: each bias is folded into the batch normalization that follows.
    keras.applications feeds BGR (Caffe order); conv1's input channels are reversed so
    the kzoo model takes RGB with the mean colour (123.68, 116.779, 103.939) removed."""
    apps = {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101,
            "resnet152": keras.applications.ResNet152}
    if model_name not in apps:
        raise ValueError(f"keras.applications converts to {sorted(apps)}, not {model_name!r}.")
    if isinstance(source, keras.Model):
        src = source
    else:
        _check_keras_applications_file(source, model_name)
        src = apps[model_name](weights=None)
        try:
            src.load_weights(source)
        except Exception as err:  # Keras' message lists every layer: keep its first line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{source!r} does not hold keras.applications' {apps[model_name].__name__} weights "
                             f"({first[:200]}).") from err
    target = kzoo.create_model(model_name, classes=src.output_shape[-1], classifier_activation=classifier_activation)
    names = {layer.name for layer in src.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kernel = src.get_layer(_need(names, layer.name)).get_weights()[0]
            if layer.name == "conv1_conv":  # Caffe's BGR input order -> RGB, as every kzoo pipeline feeds
                kernel = kernel[:, :, ::-1, :]
            layer.set_weights([kernel])
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


def _check_keras_applications_file(source, model_name):
    """keras.applications' weights are a Keras 2 HDF5 file (weights by layer name); refuse
    anything else before Keras prints pages about it."""
    kind = record.file_format(source)
    if kind == "other":
        raise ValueError(f"{source!r} is not an HDF5 file; keras.applications' weights are HDF5 .h5 files "
                         f"(resnet50_weights_tf_dim_ordering_tf_kernels.h5).")
    if kind == "unreadable":
        raise ValueError(f"{source!r} is a corrupt or truncated HDF5 file; download it again.")
    if kind == "keras3":
        raise ValueError(f"{source!r} looks like a kzoo (Keras 3 .weights.h5) weights file, not keras.applications' "
                         f".h5: it needs no conversion; load it with kzoo.{model_name}(weights=PATH).")
    if kind == "hdf5":
        raise ValueError(f"{source!r} is an HDF5 file without Keras weights (no layer_names); pass "
                         f"keras.applications' {model_name} weights file.")


def _need(names, name):
    if name not in names:
        raise ValueError(f"the source model has no layer {name!r}; is it the matching architecture?")
    return name


def caffe_alexnet(source, model_name="alexnet", classifier_activation="softmax"):
    """Caffe's bvlc_alexnet `.caffemodel` -> kzoo alexnet: 227x227 BGR input (Caffe's
    preprocessing: mean subtracted, 0-255 scale), Caffe's LRN (k=1, alpha/n), conv2/4/5
    groups as the two towers; fc6 rows reordered from Caffe's (channel, y, x) flattening
    to Keras' (y, x, channel). FC widths and classes come from the file."""
    if model_name != "alexnet":
        raise ValueError(f"the Caffe converter builds alexnet, not {model_name!r}.")
    what = repr(source) if isinstance(source, str) else "the caffemodel"
    blobs = caffe.read_caffemodel(source) if isinstance(source, str) else source
    needed = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    missing = [n for n in needed if n not in blobs]
    if missing:
        raise ValueError(f"{what} has no layers {missing} (it has {list(blobs)}); is it bvlc_alexnet?")
    arrays = {name: _caffe_weight_bias(blobs[name], name, 4 if name.startswith("conv") else 2, what)
              for name in needed}
    fc_units, classes = arrays["fc6"][0].shape[0], arrays["fc8"][0].shape[0]  # inner products: (out, in)
    if arrays["fc7"][0].shape[0] != fc_units:
        raise ValueError(f"{what}: fc6 has {fc_units} outputs but fc7 {arrays['fc7'][0].shape[0]}; kzoo's alexnet "
                         f"needs equal widths.")
    model = kzoo.alexnet(input_shape=(227, 227, 3), classes=classes, fc_units=fc_units, lrn_convention="caffe",
                         classifier_activation=classifier_activation)
    for name in needed[:5]:
        kernel, bias = arrays[name]
        layer = model.get_layer(name)
        parts = getattr(layer, "towers", None) or [layer]
        step = kernel.shape[0] // len(parts)
        for g, part in enumerate(parts):  # Caffe group g: outputs [g*step, (g+1)*step)
            k = kernel[g * step : (g + 1) * step].transpose(2, 3, 1, 0)  # (out, in, h, w) -> (h, w, in, out)
            _set(part, [k, bias[g * step : (g + 1) * step]], name)
    w6, side = arrays["fc6"][0], model.get_layer("pool5").output.shape[1]
    channels = model.get_layer("pool5").output.shape[-1]
    if w6.shape[1] != channels * side * side:
        raise ValueError(f"{what}: fc6 takes {w6.shape[1]} inputs where kzoo's alexnet (227x227 input) gives "
                         f"{side}x{side}x{channels} = {channels * side * side}; is it bvlc_alexnet?")
    w6 = w6.reshape(fc_units, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, fc_units)
    _set(model.get_layer("fc6"), [w6, arrays["fc6"][1]], "fc6")
    for name in ("fc7", "fc8"):
        _set(model.get_layer(name), [arrays[name][0].T, arrays[name][1]], name)
    return model


def _caffe_weight_bias(arrays, name, ndim, what):
    """Layer `name`'s (weight with `ndim` dims, flat bias); legacy blobs pad an inner
    product's (out, in) to (1, 1, out, in)."""
    if len(arrays) != 2:
        raise ValueError(f"{what}: layer {name!r} has {len(arrays)} blobs; kzoo's alexnet needs two (weights, "
                         f"bias).")
    weight, bias = arrays
    lead = weight.shape[: weight.ndim - ndim]
    if weight.ndim < ndim or any(d != 1 for d in lead):
        raise ValueError(f"{what}: layer {name!r} has a weight blob of shape {weight.shape}; kzoo's alexnet needs "
                         f"{ndim} dimensions ({'out, in, h, w' if ndim == 4 else 'out, in'}).")
    return weight.reshape(weight.shape[weight.ndim - ndim :]), bias.reshape(-1)


def _set(layer, arrays, name):
    expected = [tuple(w.shape) for w in layer.weights]
    got = [tuple(a.shape) for a in arrays]
    if expected != got:
        raise ValueError(f"source layer {name!r} has arrays {got} where kzoo's {layer.name!r} needs {expected}.")
    layer.set_weights(arrays)


def _torchvision_name(layer_name):
    """kzoo (keras.applications) layer name -> torchvision module path."""
    if layer_name in ("conv1_conv", "conv1_bn"):
        return "conv1" if layer_name.endswith("conv") else "bn1"
    if layer_name == "fc":
        return "fc"
    m = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", layer_name)
    if not m:
        raise ValueError(f"no torchvision counterpart for kzoo layer {layer_name!r}.")
    stage, block, index, kind = int(m[1]) - 1, int(m[2]) - 1, int(m[3]), m[4]
    if index == 0:
        return f"layer{stage}.{block}.downsample.{0 if kind == 'conv' else 1}"
    return f"layer{stage}.{block}.{'conv' if kind == 'conv' else 'bn'}{index}"


def torchvision_resnet(source, model_name, classifier_activation="softmax"):
    """A torchvision resnet18/34/50/101/152 state dict (`.pth`, read without PyTorch) ->
    kzoo's resnet (50/101/152 with the v1.5 stride placement torchvision uses). Input:
    RGB scaled to [0, 1], normalized by ImageNet's mean and std (torchvision's)."""
    depth = model_name[len("resnet"):] if model_name.startswith("resnet") else ""
    if depth not in ("18", "34", "50", "101", "152"):
        raise ValueError(f"torchvision converts to resnet18/34/50/101/152, not {model_name!r}.")
    what = repr(source) if isinstance(source, str) else "the state dict"
    state = torch_pickle.load_state_dict(source) if isinstance(source, str) else dict(source)
    used = set()

    def take(key, ndim=None):
        if key not in state:
            raise ValueError(f"{what} has no {key!r}: is it torchvision's {model_name}?")
        if not isinstance(state[key], np.ndarray) or not np.issubdtype(state[key].dtype, np.floating):
            raise ValueError(f"{what}: {key!r} is {type(state[key]).__name__} "
                             f"{getattr(state[key], 'dtype', '')}, not a floating-point tensor.")
        if ndim is not None and state[key].ndim != ndim:
            raise ValueError(f"{what}: {key!r} has shape {state[key].shape}, not {ndim} dimensions.")
        used.add(key)
        return np.asarray(state[key], np.float32)

    fc = take("fc.weight", 2)  # (classes, features)
    options = {"stride_placement": "v1.5"} if int(depth) >= 50 else {}
    model = kzoo.create_model(model_name, classes=fc.shape[0], classifier_activation=classifier_activation,
                              **options)

    for layer in model.layers:
        if not layer.weights:
            continue
        path = _torchvision_name(layer.name)
        if isinstance(layer, keras.layers.Conv2D):
            arrays = [take(f"{path}.weight", 4).transpose(2, 3, 1, 0)]
        elif isinstance(layer, keras.layers.BatchNormalization):
            arrays = [take(f"{path}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        else:
            arrays = [take("fc.weight", 2).T, take("fc.bias")]
        _set(layer, arrays, path)
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"{what} has weights kzoo's {model_name} does not use: {unused[:5]}; is it "
                         f"another depth?")
    return model


CONVERTERS = {"keras_applications_resnet": keras_applications_resnet, "caffe_alexnet": caffe_alexnet,
              "torchvision_resnet": torchvision_resnet}


def download(item):
    """`item`'s source file, through keras.utils.get_file (cached, hash-checked)."""
    folder = os.path.join(weights.cache_dir(), "downloads")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, item["file_name"])
    try:
        return keras.utils.get_file(item["file_name"], item["url"], file_hash=item["file_hash"],
                                    hash_algorithm=item.get("hash_algorithm", "auto"), cache_dir=folder,
                                    cache_subdir=".")
    except ValueError as err:  # get_file keeps a file that fails its hash: remove it
        if os.path.exists(target):
            os.remove(target)
        raise ValueError(f"{item['url']}: the downloaded file is truncated or corrupt ({err}); it was removed, "
                         f"run again to download it afresh.") from err
    except Exception as err:  # one error, the URL once: not Keras' chain of four
        cause = err
        while cause.__cause__ or cause.__context__:
            cause = cause.__cause__ or cause.__context__
        reason = (str(cause).replace(item["url"], "").strip(" :-") or type(cause).__name__).splitlines()[0][:200]
        kind = item["converter"].replace("_resnet", "").replace("_alexnet", "").replace("_", "-")  # the command's
        raise ValueError(
            f"could not download the {item['model']} '{item['name']}' weights from {item['url']} ({reason}). Offline? "
            f"Put that file in {folder} under the name {item['file_name']!r}, or convert a copy you have: python -m "
            f"kzoo.weights convert {kind} {item['model']} FILE OUT.weights.h5, then weights='OUT.weights.h5'."
        ) from None
