"""The weights registry: `manifest.json` (shipped with the package) names every set of
weights a builder accepts by name, with its source, hash, preprocessing and metrics.

A weights entry is either a file kzoo ships (`file`, checked against its sha256) or
a public checkpoint (`url` + `file_hash`) that is downloaded once with
`keras.utils.get_file`, converted to kzoo's layout by a converter of
`kzoo.weights.convert`, and cached as `<cache>/kzoo/<model>-<name>.weights.h5`
(`KZOO_CACHE_DIR`, default `~/.keras`). Nothing half-written stays in the cache.
"""

import functools
import json
import os

import numpy as np

import kzoo
from kzoo.utils import lazy_exports
from kzoo.utils.files import cache_dir, sha256
from kzoo.weights.record import save_weights_atomic

MANIFEST = os.path.join(os.path.dirname(__file__), "manifest.json")
FIELDS = ("model", "name", "data", "preprocess", "class_names", "metrics", "measured", "notes")


@functools.lru_cache(maxsize=None)
def manifest():
    """{model: {weights name: entry}} from manifest.json."""
    with open(MANIFEST, encoding="utf-8") as f:
        entries = json.load(f)["weights"]
    out = {}
    for entry in entries:
        missing = [k for k in FIELDS if k not in entry]
        if missing or not ("file" in entry) ^ ("url" in entry) or not ("mean" in entry) ^ ("mean_file" in entry):
            raise ValueError(f"manifest entry {entry.get('model')}/{entry.get('name')} lacks {missing} or has "
                             f"not exactly one of `file`, `url` and one of `mean`, `mean_file`.")
        out.setdefault(entry["model"], {})[entry["name"]] = entry
    return out


def names(model):
    """The weights names registered for `model`."""
    return sorted(manifest().get(model, {}))


def entry(model, name):
    known = manifest().get(model, {})
    if name not in known:
        listed = ", ".join(repr(n) for n in sorted(known)) or "none"
        others = sorted(f"{m}: {', '.join(sorted(ws))}" for m, ws in manifest().items())
        raise ValueError(f"{model}: no weights named {name!r} (known for {model}: {listed}; registered: "
                         f"{'; '.join(others)}). Pass weights=None to train from scratch, or the path to a "
                         f".weights.h5 file.")
    return known[name]


def fetch(model, name):
    """Local path of `model`'s weights `name` in kzoo's layout (downloading and
    converting once where the entry points at a public checkpoint)."""
    item = entry(model, name)
    if "file" in item:
        path = os.path.join(os.path.dirname(__file__), item["file"])
        _check_hash(path, item["sha256"], "sha256", f"{model}/{name}")
        return path
    converted = os.path.join(cache_dir(), f"{model}-{name}.weights.h5")
    if os.path.exists(converted):
        return converted
    convert = kzoo.weights.convert  # Keras: loaded only where a download is converted
    return save_weights_atomic(convert.CONVERTERS[item["converter"]](convert.download(item), model), converted)


def mean(model, name):
    """The mean image (or colour) `model`'s weights `name` expect subtracted."""
    item = entry(model, name)
    if "mean_file" not in item:
        return np.asarray(item["mean"], np.float32)
    path = os.path.join(os.path.dirname(__file__), item["mean_file"])
    _check_hash(path, item["mean_sha256"], "sha256", f"{model}/{name} mean")
    return np.load(path)


def _check_hash(path, expected, algorithm, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights {what}: {path} is missing from the installation; reinstall kzoo.")
    actual = sha256(path)
    if actual != expected:
        raise ValueError(f"weights {what}: {path} is corrupt ({algorithm} {actual}, expected {expected}); "
                         f"reinstall kzoo.")


__getattr__, __dir__ = lazy_exports(__name__, {})  # submodules load on first use
