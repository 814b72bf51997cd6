"""The one training loop: every recipe, every strategy, checkpoints, logs, resume.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy, so the engine owns
a custom loop built on `strategy.run`; the same loop serves one device,
MirroredStrategy and MultiWorkerMirroredStrategy.
"""

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from kzoo import registry
from kzoo.data.shards import check_fit
from kzoo.data.sources import naming_bad_images
from kzoo.data.stats import cached_stats, read_stats, stats_name
from kzoo.data.transforms import eval_map, train_map
from kzoo.models.common import dtype_policy, shape_only
from kzoo.preprocessing import Preprocess
from kzoo.train import runlog
from kzoo.train.checkpoints import Checkpoints, read_json, remove_leftovers
from kzoo.train.rundir import CheckpointError, run_dir_lock
from kzoo.train.schedules import Schedule
from kzoo.train.strategies import get_strategy, is_chief
from kzoo.utils import precision
from kzoo.utils.cli import paper_options
from kzoo.utils.files import atomic_write
from kzoo.utils.graphs import released_custom_gradients
from kzoo.utils.progress import progress_bar


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainConfig:
    """Everything one run needs; recipes fill it from their paper's table."""

    model: str
    schedule: Schedule
    preprocess: Preprocess
    run_dir: str
    batch_size: int  # global, over all replicas
    epochs: int
    momentum: float
    weight_decay: float  # coupled L2 (AlexNet §5's update rule)
    paper_batch: int = None  # the paper's batch: lr scales by batch_size / paper_batch
    model_options: dict = dataclasses.field(default_factory=dict)
    decay_biases: bool = True
    seed: int = 0
    strategy: str = "default"
    steps_per_epoch: int = None  # None: the whole training set
    val_steps: int = None  # None: the whole validation set
    checkpoint_every: int = 0  # also every N steps (0: at epoch ends only)
    log_every: int = 100  # a row of RUN/steps.csv every N steps (0: none)
    target_error: float = 0.25  # metrics' first_step_below: training error below this (AlexNet Fig. 1)
    split_seed: int = None  # the held-out images' seed when it is not `seed` (a seed study's rows)
    val_split: int = 0  # N > 0: the source's validation set is N held-out training images (the recipe holds them out)
    xla: bool = False
    precision: str = None  # a kzoo.utils.precision name; None: the run's recorded one (float32 for a new run)
    deterministic: bool = True
    verbose: int = 1

    @property
    def lr_scale(self):
        """Linear scaling: every lr of the paper's schedule times batch_size / paper_batch."""
        return self.batch_size / (self.paper_batch or self.batch_size)

    def identity(self):
        """What must match for a run directory to be resumed by this config."""
        return {"model": self.model, "model_options": self.model_options,
                "crop": self.preprocess.crop, "seed": self.seed, "batch_size": self.batch_size,
                # ZFNet's fixed ten crops change the images a run sees; random-crop runs keep their old identity
                **({"crops": self.preprocess.crops} if self.preprocess.crops != "random" else {}),
                # so do held-out training images (ResNet §4.2's 45k/5k); runs without them keep their identity
                **({"val_split": self.val_split} if self.val_split else {}),
                **({"split_seed": self.split_seed} if self.val_split and self.split_seed not in (None, self.seed) else {})}


def _identity_json(config):
    return json.loads(json.dumps(config.identity(), default=str))


def _check_run_dir(run_dir):
    """Create `run_dir` if needed and check that this process can write in it."""
    flag = f"--run-dir {run_dir!r}"
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"{flag} is a file, not a folder; pick a folder (a new one is created).")
    try:
        os.makedirs(run_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as err:
        raise ValueError(f"{flag} cannot be written ({err.strerror or err}); pick a folder you can "
                         f"write to.") from None


_CONFIG_ADVICE = ("It names the run kept in this folder, so kzoo will not resume into it: restore the file, or "
                  "pick another --run-dir.")


def _recorded(path):
    """A run directory's config.json (None if there is none), checked to be a run record."""
    previous = read_json(path, _CONFIG_ADVICE)
    if previous is not None and not isinstance(previous, dict):
        raise ValueError(f"{path} is damaged (not a kzoo run record: a {type(previous).__name__}). {_CONFIG_ADVICE}")
    return previous


@contextlib.contextmanager
def _claim_run_dir(config, source):
    """Check that the run directory is new or holds this run, hold its lock while training,
    and write its config.json on the first run. Workers other than the chief write nothing."""
    _check_resumed_log_every(config)  # every worker, before anything in the folder changes
    if not is_chief():
        yield
        return
    path = os.path.join(config.run_dir, "config.json")
    resolved = {
        "identity": {**_identity_json(config), "dataset": source.name},
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "schedule": config.schedule.describe(),  # the paper's; the lr in use is `lr_scale` times it
        "lr_scale": config.lr_scale,
        "dataset": {"name": source.name, "classes": source.classes, "train_size": source.train_size,
                    "val_size": source.val_size, "builtin": source.builtin,
                    "class_names": [str(n) for n in source.class_names],
                    "fingerprint": source.fingerprint},  # the training images' digest, where known
        "stats": stats_file(config, source),  # the mean and PCA the run subtracts (kzoo.load reads it)
    }
    _check_run_dir(config.run_dir)
    if not os.path.exists(path) and os.path.isdir(os.path.join(config.run_dir, "checkpoints")):
        raise ValueError(
            f"run directory {config.run_dir!r} holds checkpoints but no config.json, which names the run's model, "
            f"data and settings, so kzoo cannot tell whether this command continues it: restore config.json from a "
            f"copy of the run directory, or pick a new --run-dir.")
    if not os.path.exists(path) and set(os.listdir(config.run_dir)) - {".lock"}:
        raise ValueError(
            f"run directory {config.run_dir!r} exists, is not empty and holds no kzoo run; pick a new --run-dir."
        )
    with run_dir_lock(config.run_dir):
        remove_leftovers(config.run_dir)
        previous = _recorded(path)
        if previous is None:
            with atomic_write(path) as f:
                json.dump(resolved, f, indent=2)
        elif not _same_run(previous.get("identity"), resolved["identity"]):  # another model, data, crop, seed, batch
            raise ValueError(
                f"run directory {config.run_dir!r} holds another run ({previous.get('identity')}); "
                f"this one is {resolved['identity']}. Pick a new --run-dir; kzoo never overwrites a run."
            )
        else:
            _say_changed_data(config.run_dir, previous, resolved)
        yield


def _say_changed_data(run_dir, previous, resolved):
    """A run resumed on other training images than it started on (another folder of the same
    name, files added or replaced) goes on, with the statistics it started with: said."""
    before = previous.get("dataset") if isinstance(previous.get("dataset"), dict) else {}
    now = resolved["dataset"]
    changed = [f"{before[k]} -> {now[k]} {what}" for k, what in (("train_size", "training images"),
                                                                 ("val_size", "validation images"))
               if isinstance(before.get(k), int) and before[k] != now[k]]
    if before.get("fingerprint") and now["fingerprint"] and before["fingerprint"] != now["fingerprint"]:
        changed.append("their content differs")
    if changed:
        print(f"warning: the data under run {run_dir!r} has changed since it started ({'; '.join(changed)}); it "
              f"resumes on the data given now, with the mean and colour statistics it started with "
              f"({previous.get('stats') or 'stats-*.npz'}). Give the original data to resume as it began, or pick "
              f"a new --run-dir to start on this data.", file=sys.stderr)


def _resolved_options(identity):
    """The builder options an identity's model is built with, its defaults included (so
    `--option shortcut=A` is resnet20's own default, not another run)."""
    try:
        defaults = paper_options(identity["model"])
    except (KeyError, TypeError, ValueError):  # a custom model, or not a registered name
        return identity.get("model_options")
    return json.loads(json.dumps({**defaults, **(identity.get("model_options") or {})}, default=str))


def _same_run(previous, new):
    if previous == new:
        return True
    if not isinstance(previous, dict) or {**previous, "model_options": None} != {**new, "model_options": None}:
        return False
    return _resolved_options(previous) == _resolved_options(new)


def _per_example_seeds(seed, epoch, size):
    # One stateless seed pair per example: (run seed, epoch * size + index).
    index = tf.data.Dataset.range(size)
    return index.map(lambda i: tf.stack([tf.constant(seed, tf.int64), epoch * size + i]))


def _train_dataset(source, config, stats, epoch, skip_batches, global_batch, transform=None):
    """One epoch's training batches from `skip_batches` on. `transform`: the run's
    `train_map`, made once per run (else made here)."""
    size = source.train_size
    ds = source.train.shuffle(min(size, 20_000), seed=config.seed * 100_003 + epoch, reshuffle_each_iteration=False)
    if config.steps_per_epoch is not None:
        size = min(size, config.steps_per_epoch * global_batch)
        ds = ds.take(size)
    ds = tf.data.Dataset.zip((ds, _per_example_seeds(config.seed, epoch, size)))
    transform = transform or train_map(config.preprocess, stats)
    ds = ds.map(lambda pair, seed: transform(pair[0], pair[1], seed),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch, drop_remainder=True).skip(skip_batches)
    return ds.prefetch(tf.data.AUTOTUNE)


def _val_dataset(source, config, stats, global_batch):
    ds = source.val.map(eval_map(config.preprocess, stats), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(global_batch)
    if config.val_steps is not None:
        ds = ds.take(config.val_steps)
    return ds.prefetch(tf.data.AUTOTUNE)


def _stats_key(source):
    return [source.name, source.train_size]


def _recorded_stats(run_dir):
    """The statistics file config.json names, where it exists inside the run directory."""
    path = os.path.join(run_dir, "config.json")
    name = (_recorded(path) or {}).get("stats") if os.path.isfile(path) else None
    if not isinstance(name, str) or os.path.isabs(name) or os.path.normpath(name).startswith(".."):
        return None
    name = os.path.join(run_dir, name)
    return name if os.path.isfile(name) else None


def stats_file(config, source):
    """Where a run keeps its training set's statistics, relative to the run directory
    (config.json names it, so readers never guess)."""
    return os.path.join("" if source.builtin else "stats", stats_name(config.preprocess, _stats_key(source)))


def _run_stats(config, source):
    recorded = _recorded_stats(config.run_dir)
    if recorded:  # a resumed run keeps the statistics it started with, whatever the data now
        with contextlib.suppress(ValueError):  # damaged: cached_stats below says so and computes them again
            return read_stats(recorded)
    cache = os.path.dirname(os.path.join(config.run_dir, stats_file(config, source)))
    with naming_bad_images(source):
        # Only the chief writes into the run directory: another worker racing ahead of the
        # chief's claim would leave a folder that "holds no kzoo run".
        return cached_stats(source.train, config.preprocess, cache, key=_stats_key(source),
                            fingerprint=source.fingerprint, write=is_chief())


def validation_images(config, source, count):
    """The first `count` validation images as the model sees them (centre view, the run's
    mean removed): for callbacks that look at the model during training."""
    stats = _run_stats(config, source)
    ds = source.val.take(count).map(eval_map(config.preprocess, stats))
    return np.stack([image.numpy() for image, _ in ds])


def training_images(config, source, count=None, batch_size=64):
    """The first `count` training images in the source's order (None: all), as the model sees
    them at validation (centre view, the run's mean removed, no augmentation), streamed as
    numpy batches: for callbacks that search the training set (each call a fresh pass)."""
    stats = _run_stats(config, source)
    ds = source.train if count is None else source.train.take(count)
    ds = ds.map(eval_map(config.preprocess, stats), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda image, label: image).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    with naming_bad_images(source):
        yield from ds.as_numpy_iterator()


def _check_labels(source, classes):
    if source.classes > classes:
        raise ValueError(
            f"dataset {source.name!r} has {source.classes} classes ({', '.join(source.class_names[:5])}, ...) "
            f"but the model has classes={classes}: labels up to {source.classes - 1} are outside it."
        )


def build_model(config, classes, build=None):
    size = config.preprocess.crop
    return (build or registry.create_model)(config.model, input_shape=(size, size, 3), classes=classes,
                                            classifier_activation=None, **config.model_options)


def check_memory(config, classes, available=None):
    """Refuse a run whose smallest footprint cannot fit in this machine's free memory: the
    weights and their momentum, and one batch's layer outputs (a lower bound: the gradients
    and TensorFlow's own buffers come on top). Runs on a GPU are not checked here."""
    if tf.config.list_physical_devices("GPU"):
        return
    available = available or _available_bytes()
    if not available:
        return
    model = build_model(config, classes, build=functools.partial(shape_only, registry.create_model))
    params = sum(math.prod(w.shape) for w in model.weights)
    outputs = sum(math.prod(t.shape[1:]) for layer in model.layers for t in _outputs(layer))
    width = 4 if config.precision in (None, "float32") else 2  # a layer output's bytes
    weights, activations = 4 * 2 * params, width * config.batch_size * outputs
    if weights + activations > available:
        options = "".join(f" --option {k}={v}" for k, v in config.model_options.items())
        raise ValueError(
            f"{config.model}{options} at {config.preprocess.crop} px, batch {config.batch_size}, needs at least "
            f"{_gb(weights + activations)} (weights and momentum {_gb(weights)} for {params:,} parameters; one "
            f"batch's layer outputs {_gb(activations)}), but {_gb(available)} of memory is free: lower --batch-size "
            f"or --input-size{' or the --option values' if options else ''}.")


def _outputs(layer):
    out = layer.output
    return out if isinstance(out, (list, tuple)) else [out]


def _gb(n):
    for unit, size in (("PiB", 2**50), ("TiB", 2**40)):
        if n >= size:
            return f"{n / size:,.0f} {unit}"
    return f"{n / 2**30:.1f} GiB"


def _available_bytes():
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None  # not Linux: not checked


def _seed_states(model):
    """Keras' random-seed variables (Dropout's SeedGenerators): in model.variables but not
    in model.weights, and not saved by a tf.train.Checkpoint of the model."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _reseed(states, seed, step):
    # Each step's dropout masks follow from (seed, step) alone, like the augmentation, so a
    # resumed run draws exactly what an uninterrupted one draws. A step draws < 2**20 times.
    for i, state in enumerate(states):
        state.assign(np.array([seed * 1_000_003 + i, step << 20], dtype=state.dtype))


def _steps_per_epoch(source, config):
    size = source.train_size
    if config.steps_per_epoch is not None:
        size = min(size, config.steps_per_epoch * config.batch_size)
    return size // config.batch_size


def _check_position(state, steps, config):
    """A run stopped mid-epoch resumes only with the epoch length it was started with."""
    at = state["batch_in_epoch"]
    if at == 0 or (state.get("steps_in_epoch", steps) == steps and at < steps):
        return
    before = state.get("steps_per_epoch_flag")
    raise ValueError(
        f"{config.run_dir} stopped at batch {at} of {state.get('steps_in_epoch', '?')} in epoch "
        f"{state['epoch'] + 1}; this command makes epochs of {steps} steps. Rerun it with "
        f"{'--steps-per-epoch ' + str(before) if before else 'no --steps-per-epoch'} to finish that epoch "
        f"(the epoch length may change at an epoch boundary), or pick another --run-dir."
    )


def _check_no_finished_work(run_dir):
    """A run directory without a checkpoint trains from the start: refused where that would
    replace the record of finished epochs (e.g. checkpoints/ deleted to free space)."""
    folder = os.path.join(run_dir, "checkpoints")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CheckpointError(f"{folder} is a file, not kzoo's checkpoint folder; move it away, or pick another "
                              f"--run-dir.")
    kept = [name for name in ("metrics.json", "history.csv") if os.path.isfile(os.path.join(run_dir, name))]
    if kept:
        raise CheckpointError(
            f"run directory {run_dir!r} holds the record of finished epochs ({', '.join(kept)}) but no checkpoint "
            f"to resume from ({folder} is missing or empty): training again would replace that record. Pick a new "
            f"--run-dir, or move those files away to train here from the start.")


def _recorded_settings(config):
    """The settings config.json records for the run directory ({} before its first run;
    _claim_run_dir says why where the path is not a file)."""
    path = os.path.join(config.run_dir, "config.json")
    previous = _recorded(path) if os.path.isfile(path) else None
    return (previous or {}).get("config") or {}


def _resolved_precision(config):
    """`config` with its precision: the one asked for, which must be the run's own when it
    resumes (a float32 checkpoint holds no loss scale, and the run's numbers would change
    mid-way), or, where none is asked for, the run's recorded one (float32 for a new run)."""
    settings = _recorded_settings(config)
    before = precision.recorded(settings) if settings else None
    if config.precision is None:
        return dataclasses.replace(config, precision=before or precision.DEFAULT)
    asked = precision.check_precision(config.precision, "precision")
    if before is not None and before != asked:
        raise ValueError(f"run directory {config.run_dir!r} trains in {before} (its config.json); this command asks "
                         f"for {asked}. Rerun with --precision {before} (or without --precision) to resume it, or "
                         f"pick a new --run-dir.")
    return dataclasses.replace(config, precision=asked)


def _check_resumed_log_every(config):
    """A resumed run keeps the --log-every its config.json records: steps.csv's rows must be
    evenly spaced for the curves and first_step_below. Runs started before --log-every
    (no log_every in config.json) resume as they are."""
    every = _recorded_settings(config).get("log_every")
    if every is not None and every != config.log_every:
        raise ValueError(f"run directory {config.run_dir!r} logs with --log-every {every} (its config.json); this "
                         f"command gives {config.log_every}. Rerun with --log-every {every} to resume it, "
                         f"or pick a new --run-dir.")


def train(config, source, classes=None, model_fn=None, callbacks=()):
    """Train `config.model` on `source`; returns (final metrics dict, model).

    Rerunning with the same config and run directory resumes from the last
    checkpoint. `model_fn(classes)` replaces the registry model (tests).
    `callbacks`: Keras callbacks whose on_epoch_end(epoch, logs) runs after each
    epoch on the chief (e.g. kzoo.visualize.top9.FeatureEvolution).
    """
    config = _resolved_precision(config)
    note = None if tf.config.list_physical_devices("GPU") else precision.cpu_note(config.precision)
    if note and config.verbose:
        print(f"warning: {note}", file=sys.stderr)
    strategy = get_strategy(config.strategy)
    classes = classes or source.classes
    _check_labels(source, classes)
    check_fit(source, config.preprocess)  # prepared shards: resized as this recipe resizes
    if model_fn is None:
        check_memory(config, classes)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas.")
    if _steps_per_epoch(source, config) == 0:
        raise ValueError(f"the training set ({source.train_size} images) holds no full batch of "
                         f"{config.batch_size}; lower --batch-size.")
    keras.utils.set_random_seed(config.seed)
    with _claim_run_dir(config, source), _op_determinism(config.deterministic), released_custom_gradients():
        return _train(config, source, classes, model_fn, callbacks, strategy)


@contextlib.contextmanager
def _op_determinism(on):
    """Deterministic kernels while training, then the caller's setting again: left on, it
    kept Keras from compiling any later model with XLA in the same process (the
    localization regressor after the classifier fitted 2x slower)."""
    from tensorflow.python.framework import config as tf_config  # no public query or disable

    before = tf_config.is_op_determinism_enabled()
    if on:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if on and not before:
            tf_config.disable_op_determinism()


def lr_note(config, step=0, epoch=0):
    """Why the learning rate differs from the paper's (said once per command; config.json keeps the scale)."""
    scale = config.lr_scale
    paper = config.schedule.lr(int(step * scale), epoch)
    return (f"Learning rate {paper * scale:g} where the paper's schedule gives {paper:g}: every lr is scaled "
            f"by batch {config.batch_size} / the paper's batch {config.paper_batch} = {scale:g} (linear scaling).")


def _train(config, source, classes, model_fn, callbacks, strategy):
    stats = _run_stats(config, source)
    model, optimizer = _build(config, classes, model_fn, strategy)
    ckpt = Checkpoints(config.run_dir, verbose=config.verbose, model=model, optimizer=optimizer)
    steps = _steps_per_epoch(source, config)
    state, finished, kept = _resume(config, ckpt, steps)
    if kept is not None:  # a finished run: its record as it is
        return kept, model
    if config.verbose and config.lr_scale != 1 and not finished:
        print(lr_note(config, state["step"], state["epoch"]))
    loop = _Loop(config, source, strategy, model, optimizer, ckpt, steps, stats, state, classes, callbacks)
    loop.run()
    return loop.finish(), model


def _build(config, classes, model_fn, strategy):
    """(model, optimizer), built under the strategy, the optimizer's slots made before any restore."""
    with strategy.scope():
        with dtype_policy(config.precision):  # the model's layers only
            model = model_fn(classes) if model_fn else build_model(config, classes)
        optimizer = keras.optimizers.SGD(learning_rate=0.0, momentum=config.momentum)
        if precision.loss_scaled(config.precision):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _resume(config, ckpt, steps):
    """(loop state, finished, the finished run's metrics or None) from the newest checkpoint,
    saying what happens: resuming, or already finished (a damaged metrics.json is written
    again from the history)."""
    state = ckpt.restore()
    if state is None:
        _check_no_finished_work(config.run_dir)
        return {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "schedule": {}}, False, None
    _check_position(state, steps, config)
    config.schedule.load_state(state["schedule"])
    by_epochs = state["epoch"] >= config.epochs
    finished = by_epochs or config.schedule.stop(int(state["step"] * config.lr_scale), state["epoch"])
    if not finished:
        if config.verbose:
            print(f"Resuming {config.run_dir} at epoch {state['epoch'] + 1}, step {state['step']}.")
        return state, False, None
    if config.verbose:  # said once, instead of "Resuming"
        longer = (f"rerun with --epochs N above {state['epoch']}" if by_epochs else
                  "its schedule has ended (a larger --epochs does not extend it)")
        epochs = f"{state['epoch']} epoch{'s' if state['epoch'] != 1 else ''}"
        print(f"{config.run_dir} has already finished ({epochs}, {state['step']} steps): "
              f"nothing to train. To train longer, {longer}; to start afresh, pick another --run-dir.")
    metrics_path = os.path.join(config.run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        kept = None
        with contextlib.suppress(CheckpointError):
            kept = read_json(metrics_path)
        if isinstance(kept, dict):
            return state, True, kept
        print(f"warning: {metrics_path} is damaged; writing it again from the last checkpoint's history "
              f"(this run's images/s is not recorded there).", file=sys.stderr)
    return state, True, None


class _Loop:
    """The training loop of one command: epochs of distributed steps, a checkpoint at each
    epoch's end (and every `checkpoint_every` steps), the logs, and the run's final record."""

    def __init__(self, config, source, strategy, model, optimizer, ckpt, steps, stats, state, classes, callbacks):
        self.config, self.source, self.strategy, self.optimizer, self.ckpt = config, source, strategy, optimizer, ckpt
        self.steps, self.stats, self.state = steps, stats, state
        self.global_batch = config.batch_size
        self.seed_states = _seed_states(model)
        self.train_step, self.eval_step = make_steps(
            model, optimizer, strategy, global_batch=self.global_batch, classes=classes,
            weight_decay=config.weight_decay, decay_biases=config.decay_biases,
            loss_scale=precision.loss_scaled(config.precision), xla=config.xla)
        self.log = runlog.RunLog(config.run_dir, enabled=is_chief())
        self.step_log = runlog.StepLog(config.run_dir, config.log_every, enabled=is_chief())
        self.step_log.resume(state["step"], state.get("step_sums"))
        self.callbacks = list(callbacks) if is_chief() else []
        for callback in self.callbacks:
            callback.set_model(model)
        self.history = state["history"]
        self.step, self.epoch, self.first_step = state["step"], state["epoch"], state["step"]
        self.transform = train_map(config.preprocess, stats)
        self.started = time.time()

    def _scaled_step(self):
        return int(self.step * self.config.lr_scale)

    def save(self, batch_in_epoch, sums):
        # The epoch's running sums travel with the checkpoint, so a resumed epoch logs all its batches.
        self.step_log.sync()  # the rows this checkpoint counts are on disk first
        self.ckpt.save({"step": self.step, "epoch": self.epoch, "batch_in_epoch": batch_in_epoch,
                        "steps_in_epoch": self.steps, "steps_per_epoch_flag": self.config.steps_per_epoch,
                        "epoch_sums": sums, "history": self.history, "step_sums": self.step_log.sums,
                        "schedule": self.config.schedule.state()})

    def run(self):
        config = self.config
        while self.epoch < config.epochs and not config.schedule.stop(self._scaled_step(), self.epoch):
            start = self.state["batch_in_epoch"] if self.state["epoch"] == self.epoch else 0
            sums = self.state.get("epoch_sums", (0.0, 0.0, 0)) if start else (0.0, 0.0, 0)
            lr, sums = self._epoch(start, sums)
            self._end_epoch(lr, sums)
        if self.epoch < config.epochs and self.step > self.first_step and config.verbose:  # the schedule ended first
            print(f"The schedule ended at step {self.step} (epoch {self.epoch} of the {config.epochs} asked; "
                  f"{config.schedule.describe()}): a larger --epochs does not extend it.")

    def _epoch(self, start, sums):
        """The epoch's batches from `start`; returns (the last lr, (loss sum, wrong sum, images))."""
        config, scale = self.config, self.config.lr_scale
        ds = _train_dataset(self.source, config, self.stats, self.epoch, start, self.global_batch, self.transform)
        # The bar shows the epoch's running means (as the epoch's summary line) and the lr in use.
        bar = progress_bar(self.steps, verbose=config.verbose, stateful_metrics=["loss", "top1_err", "lr"])
        if config.verbose:
            print(f"Epoch {self.epoch + 1}/{config.epochs}")
        bar.update(start)
        loss_sum, wrong_sum, seen = sums
        lr = config.schedule.lr(self._scaled_step(), self.epoch) * scale
        batches = iter(self.strategy.experimental_distribute_dataset(ds))
        for i in range(start, self.steps):
            with naming_bad_images(self.source):
                batch = next(batches)
            lr = config.schedule.lr(self._scaled_step(), self.epoch) * scale
            self.optimizer.learning_rate.assign(lr)
            _reseed(self.seed_states, config.seed, self.step)
            batch_loss, batch_wrong = (float(x) for x in self.train_step(batch))
            if not math.isfinite(batch_loss):
                self._diverged(batch_loss, lr)
            self.step += 1
            loss_sum, wrong_sum, seen = loss_sum + batch_loss, wrong_sum + batch_wrong, seen + self.global_batch
            self.step_log.add(self.step, self.epoch + 1, batch_loss, batch_wrong, self.global_batch, lr)
            config.schedule.on_step_end(self._scaled_step(), batch_wrong / self.global_batch)
            bar.update(i + 1, [("loss", loss_sum / seen), ("top1_err", wrong_sum / seen), ("lr", lr)])
            if config.checkpoint_every and self.step % config.checkpoint_every == 0 and i + 1 < self.steps:
                self.save(i + 1, [loss_sum, wrong_sum, seen])
        return lr, (loss_sum, wrong_sum, seen)

    def _diverged(self, loss, lr):
        kept = self.ckpt.latest()
        raise TrainingDiverged(
            f"loss became {loss} at step {self.step + 1} (epoch {self.epoch + 1}, lr {lr:g}); stopped. "
            f"The last good checkpoint is kept: "
            f"{'step ' + str(kept['step']) if kept else 'none yet'} in {self.ckpt.folder}. "
            f"Lower the learning rate or check the data."
        )

    def _end_epoch(self, lr, sums):
        """Validate, record the epoch, checkpoint it and write the logs."""
        loss_sum, wrong_sum, seen = sums
        with naming_bad_images(self.source):
            val = _evaluate(self.eval_step, self.strategy,
                            _val_dataset(self.source, self.config, self.stats, self.global_batch))
        record = {"epoch": self.epoch + 1, "step": self.step, "lr": lr, "train_loss": loss_sum / seen,
                  "train_top1_err": wrong_sum / seen, **val}
        self.history.append(record)
        self.config.schedule.on_epoch_end(self.epoch, val["val_top1_err"])
        for callback in self.callbacks:
            callback.on_epoch_end(self.epoch, logs=record)
        self.epoch += 1
        self.save(0, [0.0, 0.0, 0])
        self.log.epoch_end(self.history)
        if self.config.verbose:
            print("  " + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))

    def finish(self):
        """The run's final record (metrics.json)."""
        seconds = time.time() - self.started
        ran = self.step - self.first_step
        if not ran and self.history:  # killed between the last checkpoint and its logs
            self.log.epoch_end(self.history)
        final = {**(self.history[-1] if self.history else {}), "epochs_run": len(self.history), "steps": self.step,
                 "steps_this_run": ran, "images_per_second": ran * self.global_batch / seconds if ran else None,
                 "replicas": self.strategy.num_replicas_in_sync, "dataset": self.source.name,
                 "first_step_below": runlog.first_below(self.config.target_error, self.step_log.rows, self.history)}
        self.log.finish(final)
        return final


def make_steps(model, optimizer, strategy, *, global_batch, classes, weight_decay, decay_biases=True,
               loss_scale=False, xla=False):
    """The distributed train and eval steps (also timed by benchmarks/train_throughput.py).

    train_step(batch) -> (summed loss, wrong top-1), over all replicas;
    eval_step(batch) -> (summed loss, top-1 errors, top-5 errors, count).
    Weight decay is coupled L2 added to the gradient: with momentum this is
    exactly AlexNet's v <- 0.9 v - wd*lr*w - lr*dL/dw. `loss_scale`: the optimizer is a
    LossScaleOptimizer (float16); bfloat16 trains unscaled, as float32 does.
    """
    decayed = {id(v) for v in model.trainable_variables if decay_biases or len(v.shape) > 1}
    # The replicas' gradients are summed: each adds its share of the decay.
    replica_decay = weight_decay / strategy.num_replicas_in_sync

    # autograph=False throughout: no tensor-dependent Python control flow here, and converting
    # the steps cost ~2 s of every run's first trace.
    @tf.function(jit_compile=xla, autograph=False)
    def gradients(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.reduce_sum(per_example) / global_batch
            scaled = optimizer.scale_loss(loss) if loss_scale else loss
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        # Loss scaling scales the gradients, and LossScaleOptimizer divides them by the
        # scale again: the decay added here must carry the scale too.
        decay = optimizer.scale_loss(replica_decay) if loss_scale else replica_decay
        grads = [g + tf.cast(decay, g.dtype) * tf.cast(v, g.dtype) if id(v) in decayed else g
                 for g, v in zip(grads, variables)]
        wrong = tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) != labels, tf.float32))
        return grads, tf.reduce_sum(per_example), wrong

    def replica_step(images, labels):
        grads, loss, wrong = gradients(images, labels)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, wrong

    def replica_eval(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        top1 = tf.math.in_top_k(labels, logits, 1)
        top5 = tf.math.in_top_k(labels, logits, min(5, classes))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return (tf.reduce_sum(per_example), count - tf.reduce_sum(tf.cast(top1, tf.float32)),
                count - tf.reduce_sum(tf.cast(top5, tf.float32)), count)

    def reduce_sum(values):
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    @tf.function(autograph=False)
    def train_step(batch):
        return reduce_sum(strategy.run(replica_step, args=batch))

    @tf.function(autograph=False)
    def eval_step(batch):
        return reduce_sum(strategy.run(replica_eval, args=batch))

    return train_step, eval_step


def _evaluate(eval_step, strategy, ds):
    totals = np.zeros(4)
    for batch in strategy.experimental_distribute_dataset(ds):
        totals += np.array([float(x) for x in eval_step(batch)])
    loss, top1, top5, count = totals
    count = max(count, 1.0)
    return {"val_loss": loss / count, "val_top1_err": top1 / count, "val_top5_err": top5 / count}
