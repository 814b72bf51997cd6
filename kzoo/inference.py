"""A trained model as one object: the network with the preprocessing it was trained
with, its mean, its class names and its dataset (`kzoo.load`).

    >>> model = kzoo.load("resnet20", weights="digits")
    >>> probabilities = model.predict(["seven.png"])
    >>> model.decode(probabilities, top=3)       # [[(7, '7', 0.93), (1, '1', 0.03), ...]]

predict, evaluate, visualize, transfer (Caltech) and localization all take this
object; none of them derives a resize, a crop or a mean of its own. Models from
registered weights need Keras only (any backend); a run directory needs TensorFlow.
"""

import contextlib
import dataclasses
import gc
import glob
import json
import os
import re
import sys
import warnings

import numpy as np

import kzoo  # kzoo.weights and kzoo.data.labels load only when registered weights are asked for
from kzoo import preprocessing, registry
from kzoo.preprocessing import Preprocess
from kzoo.utils import precision
from kzoo.utils.files import staged_path
from kzoo.utils.values import is_count


@dataclasses.dataclass
class TrainedModel:
    """A softmax classifier and everything needed to feed it and read it."""

    model: object  # keras.Model, softmax outputs
    name: str  # registry name
    preprocessing: Preprocess
    mean: np.ndarray  # mean image (H, W, 3) or colour (3,), 0-255 RGB
    class_names: list
    dataset: str  # what it was trained on (None: random weights)
    origin: str  # "run DIR", "weights NAME", "file PATH" or "random weights"
    run_config: dict = None  # a run's config.json

    def __repr__(self):  # the mean image and the class list are data, not a description
        return (f"TrainedModel({self.name}, {self.classes} classes, input {self.input_size} px, {self.origin}, "
                f"trained on {self.dataset or 'nothing (random weights)'})")

    @property
    def input_size(self):
        return self.model.inputs[0].shape[1]

    @property
    def classes(self):
        return self.model.outputs[0].shape[-1]

    @property
    def precision(self):
        """The dtype policy its layers compute in (float32, mixed_bfloat16 or mixed_float16)."""
        return next(layer.dtype_policy.name for layer in self.model.layers if layer.weights)

    def preprocess(self, images):
        """Raw images (uint8 HxWx3 of any size, a batch, or file paths) -> the model-ready
        batch: exactly the centre view the run validated with."""
        return np.stack([preprocessing.center_view(im, self.preprocessing, self.mean)
                         for im in preprocessing.as_images(images)])

    def pictures(self, images):
        """The centre views of `preprocess` as pictures: RGB in [0, 1], no mean (for figures)."""
        p = dataclasses.replace(self.preprocessing, scale=1.0, color="RGB")
        zero = np.zeros(3, np.float32)
        return np.stack([np.clip(preprocessing.center_view(im, p, zero) / 255.0, 0, 1)
                         for im in preprocessing.as_images(images)])

    def ten_views(self, images):
        """(N, 10, crop, crop, 3): AlexNet §4.1's corners, centre and flips of each image."""
        return np.stack([preprocessing.ten_views(im, self.preprocessing, self.mean)
                         for im in preprocessing.as_images(images)])

    def mean_free(self, images):
        """Each image at its own size, the mean colour removed (scaled, channel order): what
        the dense and multi-scale protocols resize to their scales."""
        return [preprocessing.mean_free(im, self.preprocessing, self.mean) for im in preprocessing.as_images(images)]

    def predict(self, images, batch_size=32):
        """Class probabilities (N, classes) of the centre views of `images`, `batch_size` at a
        time through the model's compiled predict step (Keras' `predict` builds a dataset per
        call: ~70 ms, a third of a bfloat16 ResNet-50's batch of 16 on 2 cores)."""
        views = self.preprocess(images)
        if not len(views):
            return self.model.predict(views, verbose=0)
        return np.concatenate([np.asarray(self.model.predict_on_batch(views[i:i + batch_size]))
                               for i in range(0, len(views), batch_size)])

    def decode(self, probabilities, top=5):
        """Per image, the `top` classes as (class index, class name, probability), best first."""
        return decode(probabilities, self.class_names, top)

    def end_to_end(self):
        """The Keras model of raw images: a uint8 batch (N, H, W, 3) of one size, any size, in;
        class probabilities out. Its first layer (kzoo.layers.CenterView) takes the centre view
        `preprocess` takes, its mean a weight, so the model alone classifies raw images: saved
        as a .keras file (`save`) and loaded with `keras.saving.load_model` on any backend
        (after `import kzoo.layers`, which registers the layer), or exported (`export`)."""
        import keras  # here, not at the top: `python -m kzoo.predict --help` loads no Keras

        if getattr(self, "_end_to_end", None) is None:
            images = keras.Input((None, None, 3), dtype="uint8", name="images")
            view = kzoo.layers.CenterView.of(self.preprocessing, self.mean, name="center_view")
            self._end_to_end = keras.Model(images, self.model(view(images)), name=f"{self.model.name}_end_to_end")
        return self._end_to_end

    def save(self, path):
        """Write `end_to_end()` as a .keras file at `path` (a new file, written whole or not at all)."""
        if not str(path).endswith(".keras"):
            raise ValueError(f"{path!r}: a saved model's file name ends in .keras (for other formats: export).")
        _check_new(path)
        with staged_path(str(path)) as partial:
            self.end_to_end().save(partial)
        return path

    def export(self, path, format="tf_saved_model"):
        """Write `end_to_end()` for serving (Keras' `model.export` formats): "tf_saved_model" (a
        folder; its `serve` endpoint), "onnx" (a .onnx file; `pip install tf2onnx onnx`, and
        onnxruntime to run it) or "litert" (a .tflite file; `pip install ai-edge-litert` to run it). Each takes a uint8
        batch (N, H, W, 3) of raw images of one size, any size, and returns class probabilities:
        the preprocessing travels inside. Returns `path`."""
        import keras

        if format not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}.")
        suffix = EXPORT_FORMATS[format]
        if suffix and not str(path).endswith(suffix):
            raise ValueError(f"{path!r}: a {format} file's name ends in {suffix}.")
        _check_new(path)
        signature = [keras.InputSpec(shape=(None, None, None, 3), dtype="uint8")]
        with staged_path(str(path)) as partial, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # Keras' tf2onnx patch asks numpy for np.object
            try:
                self.end_to_end().export(partial, format=format, input_signature=signature, verbose=False)
            except ImportError as err:
                raise ImportError(f"export to {format} needs a package that is not installed ({err}); "
                                  f"pip install {EXPORT_PACKAGES[format]}.") from None
        return path


# Keras' export formats: the file name's ending each needs (a SavedModel is a folder), and
# what each needs installed.
EXPORT_FORMATS = {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
EXPORT_PACKAGES = {"tf_saved_model": "tensorflow", "onnx": "tf2onnx onnx", "litert": "tensorflow"}


def _check_new(path):
    if os.path.exists(path):
        raise ValueError(f"{path!r} exists; kzoo does not overwrite it. Pick a new path.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path!r}: its folder {folder!r} does not exist; create it, or pick another path.")


class Prediction(tuple):
    """(class index, class name, probability): a plain tuple whose printed form rounds the
    probability to 4 digits for a reader (the value itself is exact)."""

    __slots__ = ()

    def __new__(cls, index, name, probability):
        return super().__new__(cls, (index, name, probability))

    def __repr__(self):
        return f"({self[0]}, {self[1]!r}, {self[2]:.4f})"

    def __getnewargs__(self):  # pickle and copy rebuild it from its three values
        return tuple(self)


def decode(probabilities, class_names, top=5):
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise ValueError(f"expected probabilities of shape (N, {len(class_names)}); got {probabilities.shape}.")
    if not is_count(top):
        raise ValueError(f"top must be a positive integer (how many classes to list; more than "
                         f"{probabilities.shape[1]} lists them all); got {top!r}.")
    top = min(int(top), probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [[Prediction(int(i), class_names[i], float(row[i])) for i in idx] for row, idx in zip(probabilities, order)]


def registered_preprocess(model, weights):
    """The `Preprocess` record registered weights `model`/`weights` were trained with."""
    record = kzoo.weights.entry(model, weights)["preprocess"]
    return Preprocess.from_dict(record, f"manifest entry {model}/{weights}")


def registered_class_names(model, weights):
    """The class names of registered weights `model`/`weights`, in output order."""
    names = kzoo.weights.entry(model, weights)["class_names"]
    return kzoo.data.labels.named_classes(names) if isinstance(names, str) else list(names)


def load(name=None, weights=None, *, run_dir=None, classes=None, input_shape=None, mean=None,
         class_names=None, preprocess=None, dtype=None, **options):
    """A `TrainedModel`: `load("resnet20", weights="digits")` (registered weights bring their
    preprocessing, mean and class names), `load(run_dir="runs/...")` (a training run brings
    everything), `load("alexnet", weights="my.weights.h5", mean=(R, G, B))` (a file does not
    say which mean its images had), or `load("alexnet")` (random weights: the paper's
    preprocessing, a zero mean). `options` are the builder's paper options; `dtype` the
    precision it computes in (a builder's dtype; default: a run's own, else float32)."""
    if run_dir is not None:
        given = [k for k, v in dict(name=name, weights=weights, classes=classes, input_shape=input_shape, mean=mean,
                                    class_names=class_names, preprocess=preprocess, **options).items()
                 if v is not None]
        if given:
            raise ValueError(f"load(run_dir=...) takes everything from the run; drop {', '.join(given)}.")
        return load_run(run_dir, dtype)
    if name is None:
        raise ValueError("load needs a registered model name (with weights=...) or run_dir=...")
    entry = registry.get_entry(name)
    registered = isinstance(weights, str) and weights in kzoo.weights.names(name)
    if registered:
        overrides = [k for k, v in dict(mean=mean, class_names=class_names, preprocess=preprocess).items()
                     if v is not None]
        if overrides:
            raise ValueError(f"weights {name}/{weights} bring their own {', '.join(overrides)}; drop them.")
        preprocess = registered_preprocess(name, weights)
        mean = kzoo.weights.mean(name, weights)
        class_names = registered_class_names(name, weights)
        classes = len(class_names) if classes is None else classes
        origin, dataset = f"weights {weights}", kzoo.weights.entry(name, weights)["data"]
    else:
        if weights is not None and mean is None and os.path.exists(weights):  # a missing file: the builder says so
            raise ValueError(f"weights file {weights!r} does not say which mean its training images had: pass "
                             f"mean=(R, G, B) (on the command line --mean R G B), or load the run it comes from "
                             f"(run_dir=... / --run-dir).")
        origin = "random weights" if weights is None else f"file {weights}"
        dataset = None
        if class_names is not None:
            classes = len(class_names) if classes is None else classes
    given = dict(classes=classes, input_shape=input_shape)  # the builder's defaults where not given
    model = entry.builder(weights=weights, dtype=dtype, **{k: v for k, v in given.items() if v is not None}, **options)
    if len(model.outputs[0].shape) != 2:
        raise ValueError(f"load gives a classifier; {name} built with {options} outputs feature maps. For "
                         f"features use kzoo.feature_extractor(kzoo.load(...).model) or the builder itself.")
    size = model.inputs[0].shape[1]
    if preprocess is None:  # the paper's pipeline, shrunk with the input at another size (as the demos train)
        preprocess = entry.preprocess_at(size)
    elif isinstance(preprocess, dict):
        preprocess = Preprocess.from_dict(preprocess)
    if preprocess.crop != size:
        raise ValueError(f"the preprocessing crops {preprocess.crop}px but {name} is built for {size}px inputs; "
                         f"build it with input_shape=({preprocess.crop}, {preprocess.crop}, 3).")
    classes = model.outputs[0].shape[-1]
    if class_names is None:
        class_names = [str(i) for i in range(classes)]
    if len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names for a model with {classes} classes.")
    return TrainedModel(model, name, preprocess, _checked_mean(mean, preprocess), list(class_names), dataset, origin)


def _checked_mean(mean, preprocess):
    """`mean` (None: zero) as float32 RGB or a centre-square image of 0-255 values; else a ValueError."""
    try:
        mean = np.zeros(3, np.float32) if mean is None else np.asarray(mean, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"mean must be a colour (R, G, B) or an image of 0-255 numbers; got {mean!r}.") from None
    if mean.shape != (3,) and mean.shape != (preprocess.center, preprocess.center, 3):
        raise ValueError(f"mean must be a colour (R, G, B) or a {preprocess.center}x{preprocess.center}x3 image; "
                         f"got shape {mean.shape}.")
    if not np.isfinite(mean).all() or mean.min() < 0 or mean.max() > 255:
        odd = "" if np.isfinite(mean).all() else " and NaN or infinity"
        raise ValueError(f"mean must hold 0-255 values (the training images' mean, RGB); got values from "
                         f"{np.nanmin(mean):g} to {np.nanmax(mean):g}{odd}.")
    return mean


def read_run_config(run_dir):
    """A training run's config.json (identity, config, dataset, stats)."""
    path = os.path.join(run_dir, "config.json")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir!r} is a file, not a kzoo run directory; give the folder a training "
                                f"command wrote (its --run-dir).")
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (it does not exist).")
    advice = "It describes the run: restore it from a copy of the run directory."
    config = kzoo.train.checkpoints.read_json(path, advice)
    if config is None and os.path.isdir(os.path.join(run_dir, "checkpoints")):
        raise FileNotFoundError(f"{run_dir!r} holds checkpoints but no config.json, which names the run's model, "
                                f"data and preprocessing: restore config.json from a copy of the run directory.")
    if config is None:
        raise FileNotFoundError(f"{run_dir!r} is not a kzoo run directory (no config.json).")
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("identity", "config",
                                                                                         "dataset")):
        raise ValueError(f"{path} is damaged (not a kzoo run record: no identity, config and dataset). {advice}")
    return config


def run_stats_path(run_dir, config):
    """The statistics file a run subtracts its mean from: config.json names it; runs made
    before it did have exactly one stats-*.npz beside it."""
    if "stats" in config:
        name = config["stats"]
        if not isinstance(name, str) or os.path.isabs(name) or os.path.normpath(name).startswith(".."):
            raise ValueError(f"{os.path.join(run_dir, 'config.json')} is damaged: its \"stats\" entry ({name!r}) "
                             f"names no file inside the run. Restore it from a copy of the run directory.")
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"run {run_dir!r}: its statistics file {config['stats']!r} (the training mean) "
                                    f"is missing; restore it, or rerun the training command, which recomputes it.")
        return path
    found = sorted(glob.glob(os.path.join(run_dir, "stats-*.npz")) + glob.glob(os.path.join(run_dir, "stats",
                                                                                           "stats-*.npz")))
    if len(found) != 1:
        raise FileNotFoundError(f"run {run_dir!r} names no statistics file in config.json and has "
                                f"{len(found) or 'no'} stats-*.npz files ({', '.join(found) or 'none'}); rerun its "
                                f"training command to recompute the mean.")
    return found[0]


def load_run(run_dir, dtype=None):
    """A `TrainedModel` from a training run: its model and latest weights, its preprocessing,
    the training set's mean, its class names and dataset, computing in the run's precision
    (or `dtype`). An unfinished run is said on stderr."""
    config = read_run_config(run_dir)
    identity, dataset = config["identity"], config["dataset"]
    preprocess = Preprocess.from_dict(config["config"]["preprocess"], f"{run_dir}/config.json")
    mean = kzoo.data.stats.read_stats(run_stats_path(run_dir, config))["mean"]
    crop = identity["crop"]
    dtype = dtype or precision.recorded(config["config"])
    model = registry.create_model(identity["model"], input_shape=(crop, crop, 3), classes=dataset["classes"],
                                  dtype=dtype, **identity["model_options"])
    restore_run_weights(run_dir, config, model)
    names = dataset.get("class_names") or [str(i) for i in range(dataset["classes"])]
    return TrainedModel(model, identity["model"], preprocess, mean, names, dataset["name"], f"run {run_dir}",
                        run_config=config)


def restore_run_weights(run_dir, config, model):
    """Load the run's latest checkpoint into `model`; a checkpoint that does not fit is one
    line, an unfinished run a warning on stderr."""
    import tensorflow as tf

    error = None
    with _quiet_checkpoint_logs():
        try:
            trained_in = precision.recorded(config["config"])
            state = kzoo.train.checkpoints.restore_model(run_dir, model, loss_scale=precision.loss_scaled(trained_in))
        except (AssertionError, ValueError, tf.errors.OpError) as err:
            error = _mismatch(run_dir, config, err)
        if error is not None:
            del model  # with it the half-read checkpoint, whose warnings come now, silenced
            gc.collect()
    if error is not None:
        raise error
    unfinished = _unfinished(run_dir, config, state)
    if unfinished:
        print(f"warning: {unfinished}; using it as it is.", file=sys.stderr)


@contextlib.contextmanager
def _quiet_checkpoint_logs():
    """TF logs one warning per unmatched tensor when a half-read checkpoint is collected."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def _mismatch(run_dir, config, err):
    """One line for a checkpoint that does not fit the run's model: TF's own reason (the
    innermost error), the model config.json names and where the checkpoint is."""
    while err.__cause__ or err.__context__:
        err = err.__cause__ or err.__context__
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    reason = re.sub(r"\s*Start afresh with another --run-dir[^.]*\.$", "", reason).rstrip(".")  # training's advice
    identity = config["identity"]
    return ValueError(
        f"the checkpoint in {os.path.join(run_dir, 'checkpoints')!r} does not fit the run's model "
        f"{identity['model']} (options {identity['model_options']}, input {identity['crop']}, "
        f"{config['dataset']['classes']} classes, as its config.json says): {reason}. It comes from another "
        f"run, or config.json was edited; restore the run's own files.")


def _unfinished(run_dir, config, state):
    """Why the run is not finished (its checkpoint short of the planned training), or None."""
    planned = config["config"].get("epochs")
    where = f"epoch {state['epoch']} of {planned}, step {state['step']}" + (
        f" ({state['batch_in_epoch']} batches into epoch {state['epoch'] + 1})" if state.get("batch_in_epoch") else "")
    metrics_path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(metrics_path):
        return f"run {run_dir!r} is unfinished (no metrics.json): its checkpoint is at {where}"
    with open(metrics_path, encoding="utf-8") as f:
        steps = json.load(f).get("steps")
    if steps is not None and state["step"] < steps:
        return f"run {run_dir!r} finished at step {steps}, but its checkpoint is at {where}"
    return None


def preprocess_input(x, model, weights):
    """keras.applications' form: a batch already at the model's input size (N, H, W, 3),
    0-255 RGB -> what registered weights `model`/`weights` take (mean removed, scaled,
    channel order). For raw images of any size use `kzoo.load(...).preprocess`."""
    p, mean = registered_preprocess(model, weights), kzoo.weights.mean(model, weights)
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected a batch (N, H, W, 3); got shape {x.shape}.")
    if mean.ndim == 3 and mean.shape != x.shape[1:]:
        raise ValueError(f"{model}/{weights} subtracts a {mean.shape[0]}x{mean.shape[1]} mean image, but the batch is "
                         f"{x.shape[1]}x{x.shape[2]}: give it at that size, or pass raw images of any size to "
                         f"kzoo.load({model!r}, weights={weights!r}).preprocess.")
    x = x - mean
    x = x * np.float32(p.scale)
    return x[..., ::-1] if p.color == "BGR" else x


def decode_predictions(preds, model, weights, top=5):
    """keras.applications' form: per image, the `top` (class index, class name, probability)
    of registered weights `model`/`weights`."""
    return decode(preds, registered_class_names(model, weights), top)


