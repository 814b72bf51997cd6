"""Which architecture wrote a weights file: the record kzoo keeps in every `.weights.h5`
it writes, and the format checks that come before loading or converting one.

Keras 3 loads a `.weights.h5` by layer order and class, not by layer name, so weights
of another architecture with the same shapes (plain20 into resnet20) load silently.
The record closes that gap: two HDF5 root attributes,

    kzoo_model   the registry name of the builder that made the model ("" if none)
    kzoo_layers  one 64-bit hash per layer (input layers left out) of its class, its
                 name and its weight shapes: not the model's name, not the input size

and a file loads only into a model whose layers, up to its last layer with weights,
hash the same (so the features of a full model's file still load into its headless
model). Files without a record (written by plain Keras) load as before.
"""

import contextlib
import hashlib
import os

import h5py
import numpy as np

MODEL_ATTR, LAYERS_ATTR = "kzoo_model", "kzoo_layers"


def registry_name(model):
    """The kzoo builder that made `model` (set by kzoo.models.common.build), else ""."""
    return getattr(model, "_kzoo_model", "") or ""


def _layers(model):
    # by class name: this module reads and writes records without importing Keras
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def layer_hashes(model):
    out = []
    for layer in _layers(model):
        row = f"{type(layer).__name__}|{layer.name}|{[tuple(w.shape) for w in layer.weights]}"
        out.append(int.from_bytes(hashlib.blake2b(row.encode(), digest_size=8).digest(), "little"))
    return np.asarray(out, np.uint64)


def write(path, model):
    """Add `model`'s record to the weights file `path` (just written by Keras)."""
    with h5py.File(path, "a") as f:
        f.attrs[MODEL_ATTR] = registry_name(model)
        f.attrs[LAYERS_ATTR] = layer_hashes(model)


def save_weights_atomic(model, path):
    """`model.save_weights(path)` through a temporary file beside it (Keras needs the
    .weights.h5 suffix, so atomic_write's file object does not fit), with the record of
    the architecture that wrote it."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, ".tmp-" + name)
    try:
        model.save_weights(tmp)
        write(tmp, model)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path


def file_format(path):
    """"keras3" (a `.weights.h5` layout), "legacy" (Keras 2 / keras.applications `.h5`),
    "hdf5" (HDF5 holding neither), "unreadable" (HDF5 signature, but corrupt) or
    "other" (not HDF5: a `.keras` archive, a text file, ...)."""
    if not os.path.isfile(path) or not h5py.is_hdf5(path):
        return "other"
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs:
                return "legacy"
            return "keras3" if "layers" in f or "vars" in f or LAYERS_ATTR in f.attrs else "hdf5"
    except OSError:
        return "unreadable"


def read(path):
    """(registry name, layer hashes) of the record in `path`, or None where it has none."""
    if file_format(path) != "keras3":
        return None
    with h5py.File(path, "r") as f:
        if LAYERS_ATTR not in f.attrs:
            return None
        name = f.attrs.get(MODEL_ATTR, "")
        return (name.decode() if isinstance(name, bytes) else str(name)), np.asarray(f.attrs[LAYERS_ATTR], np.uint64)


def check(model, path):
    """Raise a ValueError naming both architectures when `path`'s record says another
    architecture wrote it."""
    stored = read(path)
    if stored is None:
        return
    theirs, hashes = stored
    layers, mine = _layers(model), layer_hashes(model)
    weighted = [i for i, layer in enumerate(layers) if layer.weights]
    end = weighted[-1] + 1 if weighted else 0
    differ = [i for i in range(min(end, len(hashes))) if hashes[i] != mine[i]]
    if not differ and len(hashes) >= end:
        return
    ours = registry_name(model) or f"the model {model.name!r}"
    if not differ:
        where = f"the file's model ends before this model's layer {layers[len(hashes)].name!r}"
    else:
        layer = layers[differ[0]]
        where = f"they differ from this model's layer {layer.name!r} ({type(layer).__name__}) on"
    if theirs and theirs != registry_name(model):
        writer, fix = f"kzoo's {theirs}, not {ours}", f"Load it into kzoo.{theirs}(...) built with the same options"
    else:
        writer = f"kzoo's {theirs} built with other options" if theirs else "a model no kzoo builder made"
        fix = "Build the model the file was saved from (the same builder and options)"
    raise ValueError(f"weights file {path!r} was written by {writer}: {where}. {fix}, or pass a file "
                     f"saved from {ours}.")
