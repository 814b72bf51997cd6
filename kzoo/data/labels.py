"""Class names the installed packages ship, read without importing them (no TensorFlow).

ImageNet (ILSVRC-2012): tensorflow-datasets ships the 1000 synset ids in label order
(imagenet2012/labels.txt) and the human-readable names in the same order (the list
in its SI-Score dataset's labels.py); both are read as text.
"""

import ast
import functools
import importlib.util
import os


def _tfds_file(*parts):
    spec = importlib.util.find_spec("tensorflow_datasets")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("tensorflow-datasets is not installed; it ships ImageNet's class list "
                                "(pip install tensorflow-datasets).")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"the installed tensorflow-datasets has no {os.path.join(*parts)}; "
                                f"install tensorflow-datasets>=4.9.")
    return path


@functools.lru_cache(maxsize=None)
def imagenet_synsets():
    """The 1000 WordNet ids of ILSVRC-2012 in label order (n01440764 first)."""
    with open(_tfds_file("datasets", "imagenet2012", "labels.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@functools.lru_cache(maxsize=None)
def imagenet_names():
    """The 1000 human-readable ILSVRC-2012 names in label order ("tench, Tinca tinca" first)."""
    with open(_tfds_file("datasets", "siscore", "labels.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMAGENET_LABELS_LIST" for t in node.targets):
            names = ast.literal_eval(node.value)
            if len(names) == 1000:
                return names
    raise FileNotFoundError("the installed tensorflow-datasets no longer ships ImageNet's class names "
                            "(siscore/labels.py IMAGENET_LABELS_LIST).")


def named_classes(key):
    """Class names by the key a manifest entry gives: "imagenet2012" -> "n01440764 tench, ..."."""
    if key == "imagenet2012":
        return [f"{synset} {name}" for synset, name in zip(imagenet_synsets(), imagenet_names())]
    raise ValueError(f"unknown class list {key!r}; expected 'imagenet2012' or a list of names.")
