"""What every kzoo builder shares: keras.applications arguments, their validation, heads.

A paper file states its table and a family function
`family(inputs, head, **options) -> outputs`; `variant()` turns that into a
public builder with the keras.applications signature and registers it.
"""

import contextlib
import dataclasses
import inspect
import os
import sys
import warnings

import h5py
import keras
from keras.src.backend.common import global_state  # Keras' pending-initialization list (shape_only)

import kzoo  # kzoo.weights on first use: a model without weights does not need it
from kzoo import registry
from kzoo.utils import precision
from kzoo.utils.values import is_count

POOLINGS = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class Head:
    """The validated classifier/pooling choice a family function applies."""

    include_top: bool
    pooling: str
    classes: int
    classifier_activation: object

    def apply(self, x, classifier):
        """`classifier(x, classes, activation)` on top, else the optional global pooling.
        Under a mixed policy the classifier gives logits and its activation runs in float32
        (Keras' advice: a bfloat16 softmax keeps 3 significant digits)."""
        if self.include_top and keras.config.dtype_policy().compute_dtype != "float32":
            logits = classifier(x, self.classes, None)
            return keras.layers.Activation(self.classifier_activation, dtype="float32", name="float32_output")(logits)
        if self.include_top:
            return classifier(x, self.classes, self.classifier_activation)
        if self.pooling == "avg":
            return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if self.pooling == "max":
            return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
        return x


@contextlib.contextmanager
def dtype_policy(name):
    """Layers made inside take the dtype policy `name` (kzoo.utils.precision); the global
    policy is the caller's again after (None: the global policy as it is)."""
    if name is None:
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision.check_precision(name))
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def deep_graph_recursion(limit=30_000):
    """Keras walks a functional graph recursively: ResNet-1202's ~3,600 layers need more
    than Python's default 1,000 frames (to build, save, load or clone it)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _no_values(shape, dtype=None):
    raise ValueError("a shape-only model (kzoo.models.common.shape_only) has no weight values; "
                     "assign them (load_weights) or build the model itself")


def shape_only(build, *args, **kwargs):
    """`build(*args, **kwargs)` with every layer, shape and name but no weight values: nothing
    is allocated or drawn (a billion-unit option costs nothing), so a builder's checks run
    for free. Reading a weight before assigning it (e.g. by `load_weights`) raises."""
    with keras.StatelessScope(initialize_variables=False):
        model = build(*args, **kwargs)
    mine = {id(v) for v in model.variables}
    pending = global_state.get_global_attribute("uninitialized_variables") or []
    # Else the next top-level StatelessScope (Keras' shape inference) initializes them all.
    global_state.set_global_attribute("uninitialized_variables", [v for v in pending if id(v) not in mine])
    for v in model.variables:
        v._initializer = _no_values
    return model


def _check_weights(entry, weights, include_top, classes, classifier_activation):
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"{entry.name}: `weights` must be None, a registered weights name or a path to a "
            f"weights file; got {weights!r}."
        )
    weights = os.fspath(weights)
    known_names = kzoo.weights.names(entry.name)
    is_name = weights == "imagenet" or weights in known_names
    if not is_name and not os.path.exists(weights):
        known = ", ".join(repr(w) for w in known_names) or "none"
        raise ValueError(
            f"{entry.name}: `weights`={weights!r} is neither a registered weights name "
            f"(known for {entry.name}: {known}) nor an existing file."
        )
    if include_top and is_name and classes != entry.default_classes:
        raise ValueError(
            f"{entry.name}: with pretrained `weights`={weights!r} and `include_top=True`, "
            f"`classes` must be {entry.default_classes} (got {classes}); pass include_top=False "
            f"to put your own classifier on the features."
        )
    if classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"{entry.name}: with pretrained `weights`, `classifier_activation` must be None or "
            f"'softmax' (got {classifier_activation!r})."
        )
    return weights


def _weights_file(entry, weights):
    """The file to load: a path as given, or a registered name fetched (and converted)
    through the weights manifest."""
    if os.path.exists(weights):
        return weights
    return kzoo.weights.fetch(entry.name, weights)


def _resolve_input_shape(entry, input_shape, input_tensor, include_top, flat_head, weights):
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            f"{entry.name}: kzoo models are channels_last; call "
            f"keras.config.set_image_data_format('channels_last')."
        )
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        input_shape = (entry.default_size, entry.default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"{entry.name}: `input_shape` must be (height, width, channels); got {input_shape}."
        )
    *spatial, channels = input_shape
    if not is_count(channels):
        raise ValueError(f"{entry.name}: `input_shape` needs a known channel count; got {input_shape}.")
    if weights is not None and channels != 3:
        raise ValueError(
            f"{entry.name}: pretrained weights take RGB input, so `input_shape` must have 3 "
            f"channels; got {channels} in {input_shape}."
        )
    for size in spatial:
        if size is None:
            if include_top and flat_head:
                raise ValueError(
                    f"{entry.name}: with `include_top=True` the classifier flattens the last map, "
                    f"so `input_shape` needs fixed height and width (got {input_shape}); pass "
                    f"include_top=False for variable-size inputs."
                )
        elif size < entry.min_size:
            raise ValueError(
                f"{entry.name}: `input_shape`={input_shape} is too small; height and width must be "
                f"at least {entry.min_size} (the paper uses {entry.default_size})."
            )
    return input_shape


def build(entry, family, flat_head, fixed, include_top=True, weights=None, input_tensor=None,
          input_shape=None, pooling=None, classes=None, classifier_activation="softmax", name=None,
          dtype=None, **options):
    """Validate the keras.applications arguments, build `family`, load weights."""
    classes = entry.default_classes if classes is None else classes
    if not isinstance(include_top, bool):
        raise ValueError(f"{entry.name}: `include_top` must be True or False; got {include_top!r}.")
    if not is_count(classes):
        raise ValueError(f"{entry.name}: `classes` must be a positive integer; got {classes!r}.")
    classes = int(classes)  # a NumPy integer is one
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"{entry.name}: `name` must be a non-empty string (or None for {entry.name!r}); "
                         f"got {name!r}.")
    if pooling not in POOLINGS:
        raise ValueError(f"{entry.name}: `pooling` must be one of {POOLINGS}; got {pooling!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{entry.name}: unknown `classifier_activation`={classifier_activation!r}."
        ) from err
    if dtype is not None:
        dtype = precision.check_precision(dtype, f"{entry.name}: `dtype`")
    weights_arg = weights
    weights = _check_weights(entry, weights, include_top, classes, classifier_activation)
    shape = _resolve_input_shape(entry, input_shape, input_tensor, include_top, flat_head, weights)
    weights = None if weights is None else _weights_file(entry, weights)

    if input_tensor is None:
        img_input = keras.Input(shape=shape, name="input")
    elif keras.backend.is_keras_tensor(input_tensor):
        img_input = input_tensor
    else:
        img_input = keras.Input(tensor=input_tensor, shape=shape, name="input")
    head = Head(include_top, pooling, classes, classifier_activation)
    with dtype_policy(dtype):
        outputs = family(img_input, head, **fixed, **options)
    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    with deep_graph_recursion():
        model = keras.Model(inputs, outputs, name=entry.name if name is None else name)
    model._kzoo_model = entry.name  # the architecture record of the weights files kzoo writes (kzoo.weights.record)
    if weights is not None and not include_top and not os.path.exists(weights_arg):
        # a registered checkpoint holds the classifier too: load it into the full net, keep the rest
        full = build(entry, family, flat_head, fixed, weights=weights_arg, dtype=dtype, **options)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())
    elif weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model, path):
    """`model.load_weights(path)`, refusing a file another architecture wrote (its kzoo
    record) and a Keras 3 file without the .weights.h5 suffix, with an error that says
    which weight does not fit."""
    record = kzoo.weights.record
    kind = record.file_format(path)
    if kind == "keras3" and not path.endswith(".weights.h5"):
        raise ValueError(f"weights file {path!r} is a Keras 3 weights file without the .weights.h5 suffix (Keras "
                         f"reads other .h5 names as the Keras 2 format): rename it to "
                         f"{_weights_h5_name(path)!r}.")
    record.check(model, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            error = None
        except Exception as err:  # Keras raises ValueError or KeyError with long object lists
            error = err
    # Keras warns, and may go on, when part of the file has no place in the model: the layers
    # it skips would keep their random weights. Both are the same misfit.
    skipped = [w for w in caught if "freshly-initialized" in str(w.message)]
    external = _external_arrays(path) if error is not None and kind == "keras3" else []
    if external:
        which = external[0] + (" and others" if len(external) > 1 else "")
        raise ValueError(f"weights file {path!r} keeps its arrays ({which}) in files outside it (HDF5 external "
                         f"storage), which Keras does not read: save the weights into one file again "
                         f"(model.save_weights).") from None
    if error is not None or skipped:
        raise ValueError(f"weights file {path!r} does not fit {model.name!r}: {_mismatch(model, path, kind, error)}. "
                         f"Build the model the file was saved from (the same builder, input_shape, classes "
                         f"and options).") from error
    for w in caught:  # the others, as Keras gave them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _external_arrays(path):
    """The datasets of an HDF5 file whose values live in other files."""
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and obj.external else None)
    return found


def _weights_h5_name(path):
    root = path[: -len(".h5")] if path.endswith(".h5") else path
    return root + ".weights.h5"


def _mismatch(model, path, kind, error=None):
    if kind in ("other", "unreadable", "hdf5"):
        return "it is not a readable .weights.h5 file (corrupt or another format)"
    if kind == "legacy":
        return ("it is a Keras 2 / keras.applications .h5 file (weights by layer name); convert keras.applications' "
                "ResNets with `python -m kzoo.weights convert keras-applications MODEL FILE OUT.weights.h5`")
    with h5py.File(path, "r") as f:
        stored = []
        f.visititems(lambda name, obj: stored.append(tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    needed = [(w.path, tuple(w.shape)) for w in model.weights]
    notes = [f"it holds {len(stored)} arrays, the model has {len(needed)}"] if len(stored) != len(needed) else []
    remaining = list(stored)
    for name, shape in needed:
        if shape not in remaining:
            notes.append(f"the model's {name} {shape} has no array of that shape in the file")
            break
        remaining.remove(shape)
    if not notes and error is not None:  # every shape has its array: Keras' own reason
        return f"Keras could not read it ({_first_line(error)})"
    return "; ".join(notes) or "its arrays are stored under other names"


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


_KERAS_PARAMS = [
    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d)
    for n, d in [
        ("include_top", True),
        ("weights", None),
        ("input_tensor", None),
        ("input_shape", None),
        ("pooling", None),
        ("classes", None),
        ("classifier_activation", "softmax"),
        ("name", None),
        ("dtype", None),
    ]
]

ARGS_DOC = """
    Args (as keras.applications):
        include_top: whether to include the paper's classifier.
        weights: None (random init as the paper states), a registered weights
            name, or the path to a weights file.
        input_tensor: optional Keras tensor to use as image input.
        input_shape: (height, width, channels); default ({size}, {size}, 3).
        pooling: with include_top=False, None (the last feature map), "avg" or "max".
        classes: classifier width; default {classes}.
        classifier_activation: activation of the classifier layer
            ("softmax"; None for logits).
        name: model name; default "{name}".
        dtype: the Keras dtype policy its layers compute in: "float32",
            "mixed_bfloat16" (AMX CPUs, A100/H100 GPUs) or "mixed_float16";
            None: Keras' global policy. Weights stay float32; under a mixed
            policy the classifier's activation runs in float32.
"""


def variant(name, family, *, paper, section, default_size, min_size, expected, options,
            classes=1000, flat_head=True, doc="", pipeline=None, **fixed):
    """Register `name` as a builder of `family` with `fixed` arguments, and return it.
    `pipeline`: its key in kzoo.preprocessing.PIPELINES (default: `paper`).

    `options` maps each paper option the user may set to its default
    (keyword-only in the builder's signature).
    """
    entry = None

    def builder(*args, **kwargs):
        unknown = set(kwargs) - set(options) - {p.name for p in _KERAS_PARAMS}
        if unknown:
            raise TypeError(
                f"{name}() got unexpected argument(s) {sorted(unknown)}; its own options are "
                f"{sorted(options) or 'none'}, besides the keras.applications arguments."
            )
        bound = builder.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        return build(entry, family, flat_head, fixed, **bound.arguments)

    params = _KERAS_PARAMS + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in options.items()
    ]
    params[5] = params[5].replace(default=classes)
    builder.__signature__ = inspect.Signature(params)
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc + ARGS_DOC.format(size=default_size, classes=classes, name=name)
    entry = registry.register(
        registry.ModelEntry(
            name=name,
            builder=builder,
            paper=paper,
            section=section,
            default_size=default_size,
            min_size=min_size,
            default_classes=classes,
            expected=expected,
            preprocess=registry.PIPELINES[pipeline or paper],
        )
    )
    return builder
