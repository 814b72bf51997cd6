"""The one training loop: every recipe, every strategy, checkpoints, logs, resume.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy, so the engine owns
a custom loop built on `strategy.run`; the same loop serves one device,
MirroredStrategy and MultiWorkerMirroredStrategy.
"""

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from kzoo.data.sources import naming_bad_images
from kzoo.data.stats import cached_stats
from kzoo.data.transforms import Preprocess, eval_map, train_map
from kzoo.train import runlog
from kzoo.train.schedules import Schedule
from kzoo.train.strategies import get_strategy, is_chief, task_id
from kzoo.utils.files import atomic_write


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
    xla: bool = False
    mixed_precision: bool = False
    deterministic: bool = True
    verbose: int = 1

    def identity(self):
        """What must match for a run directory to be resumed by this config."""
        return {"model": self.model, "model_options": self.model_options,
                "crop": self.preprocess.crop, "seed": self.seed, "batch_size": self.batch_size}


def _identity_json(config):
    return json.loads(json.dumps(config.identity(), default=str))


def _prepare_run_dir(config, source):
    """Create the run directory, or check that an existing one is this run."""
    path = os.path.join(config.run_dir, "config.json")
    resolved = {
        "identity": {**_identity_json(config), "dataset": source.name},
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "schedule": config.schedule.describe(),
        "dataset": {"name": source.name, "classes": source.classes, "train_size": source.train_size,
                    "val_size": source.val_size, "builtin": source.builtin},
    }
    if not is_chief():
        return  # workers other than the chief write nothing
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous.get("identity") != resolved["identity"]:  # another model, dataset, crop, seed or batch
            raise ValueError(
                f"run directory {config.run_dir!r} holds another run ({previous.get('identity')}); "
                f"this one is {resolved['identity']}. Pick a new --run-dir; kzoo never overwrites a run."
            )
        return
    if os.path.isdir(config.run_dir) and os.listdir(config.run_dir):
        raise ValueError(
            f"run directory {config.run_dir!r} exists, is not empty and holds no kzoo run; pick a new --run-dir."
        )
    os.makedirs(config.run_dir, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(resolved, f, indent=2)


class Checkpoints:
    """Model + optimizer (tf.train.Checkpoint) and the loop's state (JSON), written so
    that `latest.json` only ever names a complete pair."""

    def __init__(self, run_dir, keep=2, **objects):
        self.folder = os.path.join(run_dir, "checkpoints")
        self.keep = keep
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.chief = is_chief()

    def latest(self):
        path = os.path.join(self.folder, "latest.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save(self, state):
        step = state["step"]
        if not self.chief:  # every worker must take part in the save; only the chief's stays
            scratch = tempfile.mkdtemp(prefix=f"kzoo-{task_id()}-")
            self.checkpoint.write(os.path.join(scratch, "ckpt"))
            shutil.rmtree(scratch, ignore_errors=True)
            return
        os.makedirs(self.folder, exist_ok=True)
        prefix = self.checkpoint.write(os.path.join(self.folder, f"ckpt-{step}"))
        record = {**state, "prefix": os.path.basename(prefix)}
        with atomic_write(os.path.join(self.folder, "latest.json")) as f:
            json.dump(record, f, indent=1)
        self._prune(step)

    def _prune(self, step):
        steps = sorted({int(n.split("-")[1].split(".")[0]) for n in os.listdir(self.folder)
                        if n.startswith("ckpt-")})
        for old in [s for s in steps if s != step][: max(0, len(steps) - self.keep)]:
            for name in os.listdir(self.folder):
                if name.startswith(f"ckpt-{old}."):
                    os.remove(os.path.join(self.folder, name))

    def restore(self):
        state = self.latest()
        if state is None:
            return None
        self.checkpoint.read(os.path.join(self.folder, state["prefix"])).assert_consumed()
        return state


def restore_model(run_dir, model, mixed_precision=False):
    """Load a run's latest weights into `model` (built like the run's model).

    The weights are saved through the optimizer that holds them, so the same
    kind of optimizer is rebuilt to read them back."""
    optimizer = keras.optimizers.SGD(momentum=0.9)
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    state = Checkpoints(run_dir, model=model, optimizer=optimizer).restore()
    if state is None:
        raise FileNotFoundError(f"{run_dir!r} holds no checkpoint yet (no checkpoints/latest.json).")
    return state


def _per_example_seeds(seed, epoch, size):
    # One stateless seed pair per example: (run seed, epoch * size + index).
    index = tf.data.Dataset.range(size)
    return index.map(lambda i: tf.stack([tf.constant(seed, tf.int64), epoch * size + i]))


def _train_dataset(source, config, stats, epoch, skip_batches, global_batch):
    size = source.train_size
    ds = source.train.shuffle(min(size, 20_000), seed=config.seed * 100_003 + epoch, reshuffle_each_iteration=False)
    if config.steps_per_epoch is not None:
        size = min(size, config.steps_per_epoch * global_batch)
        ds = ds.take(size)
    ds = tf.data.Dataset.zip((ds, _per_example_seeds(config.seed, epoch, size)))
    transform = train_map(config.preprocess, stats)
    ds = ds.map(lambda pair, seed: transform(pair[0], pair[1], seed),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(global_batch, drop_remainder=True).skip(skip_batches)
    return ds.prefetch(tf.data.AUTOTUNE), size // global_batch


def _val_dataset(source, config, stats, global_batch):
    ds = source.val.map(eval_map(config.preprocess, stats), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(global_batch)
    if config.val_steps is not None:
        ds = ds.take(config.val_steps)
    return ds.prefetch(tf.data.AUTOTUNE)


def _run_stats(config, source):
    cache = config.run_dir if source.builtin else os.path.join(config.run_dir, "stats")
    with naming_bad_images(source):
        return cached_stats(source.train, config.preprocess, cache, key=[source.name, source.train_size])


def validation_images(config, source, count):
    """The first `count` validation images as the model sees them (centre view, the run's
    mean removed): for callbacks that look at the model during training."""
    stats = _run_stats(config, source)
    ds = source.val.take(count).map(eval_map(config.preprocess, stats))
    return np.stack([image.numpy() for image, _ in ds])


def _check_labels(source, classes):
    if source.classes > classes:
        raise ValueError(
            f"dataset {source.name!r} has {source.classes} classes ({', '.join(source.class_names[:5])}, ...) "
            f"but the model has classes={classes}: labels up to {source.classes - 1} are outside it."
        )


def build_model(config, classes):
    from kzoo import registry

    size = config.preprocess.crop
    return registry.create_model(config.model, input_shape=(size, size, 3), classes=classes,
                                 classifier_activation=None, **config.model_options)


def train(config, source, classes=None, model_fn=None, callbacks=()):
    """Train `config.model` on `source`; returns the final metrics dict.

    Rerunning with the same config and run directory resumes from the last
    checkpoint. `model_fn(classes)` replaces the registry model (tests).
    `callbacks`: Keras callbacks whose on_epoch_end(epoch, logs) runs after each
    epoch on the chief (e.g. kzoo.visualize.top9.FeatureEvolution).
    """
    strategy = get_strategy(config.strategy)
    classes = classes or source.classes
    _check_labels(source, classes)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    _prepare_run_dir(config, source)
    stats = _run_stats(config, source)

    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size
    if global_batch % replicas:
        raise ValueError(f"--batch-size {global_batch} is not divisible by the {replicas} replicas.")
    lr_scale = global_batch / (config.paper_batch or global_batch)

    with strategy.scope():
        model = model_fn(classes) if model_fn else build_model(config, classes)
        optimizer = keras.optimizers.SGD(learning_rate=0.0, momentum=config.momentum)
        if config.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    ckpt = Checkpoints(config.run_dir, model=model, optimizer=optimizer)
    state = ckpt.restore()
    if state is not None:
        config.schedule.load_state(state["schedule"])
        if config.verbose:
            print(f"Resuming {config.run_dir} at epoch {state['epoch'] + 1}, step {state['step']}.")
    state = state or {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "schedule": {}}

    train_step, eval_step = make_steps(
        model, optimizer, strategy, global_batch=global_batch, classes=classes,
        weight_decay=config.weight_decay, decay_biases=config.decay_biases,
        mixed_precision=config.mixed_precision, xla=config.xla)

    log = runlog.RunLog(config.run_dir, enabled=is_chief())
    callbacks = list(callbacks) if is_chief() else []
    for callback in callbacks:
        callback.set_model(model)
    history = state["history"]
    step, epoch = state["step"], state["epoch"]
    started = time.time()
    images_seen = 0
    while epoch < config.epochs and not config.schedule.stop(int(step * lr_scale), epoch):
        ds, steps = _train_dataset(source, config, stats, epoch, state["batch_in_epoch"], global_batch)
        if steps == 0:
            raise ValueError(
                f"the training set ({source.train_size} images) holds no full batch of {global_batch}; "
                f"lower --batch-size."
            )
        bar = keras.utils.Progbar(steps, verbose=config.verbose, stateful_metrics=["lr"])
        if config.verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}")
        bar.update(state["batch_in_epoch"])
        loss_sum = wrong_sum = seen = 0.0
        batches = iter(strategy.experimental_distribute_dataset(ds))
        for i in range(state["batch_in_epoch"], steps):
            with naming_bad_images(source):
                batch = next(batches)
            lr = config.schedule.lr(int(step * lr_scale), epoch) * lr_scale
            optimizer.learning_rate.assign(lr)
            batch_loss, batch_wrong = (float(x) for x in train_step(batch))
            if not math.isfinite(batch_loss):
                kept = ckpt.latest()
                raise TrainingDiverged(
                    f"loss became {batch_loss} at step {step + 1} (epoch {epoch + 1}, lr {lr:g}); stopped. "
                    f"The last good checkpoint is kept: "
                    f"{'step ' + str(kept['step']) if kept else 'none yet'} in {ckpt.folder}. "
                    f"Lower the learning rate or check the data."
                )
            step += 1
            images_seen += global_batch
            loss_sum, wrong_sum, seen = loss_sum + batch_loss, wrong_sum + batch_wrong, seen + global_batch
            config.schedule.on_step_end(int(step * lr_scale), batch_wrong / global_batch)
            bar.update(i + 1, [("loss", batch_loss / global_batch), ("top1_err", batch_wrong / global_batch),
                               ("lr", lr)])
            if config.checkpoint_every and step % config.checkpoint_every == 0 and i + 1 < steps:
                ckpt.save({"step": step, "epoch": epoch, "batch_in_epoch": i + 1, "history": history,
                           "schedule": config.schedule.state()})
        with naming_bad_images(source):
            val = _evaluate(eval_step, strategy, _val_dataset(source, config, stats, global_batch))
        record = {"epoch": epoch + 1, "step": step, "lr": lr, "train_loss": loss_sum / seen,
                  "train_top1_err": wrong_sum / seen, **val}
        history.append(record)
        config.schedule.on_epoch_end(epoch, val["val_top1_err"])
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs=record)
        epoch += 1
        state = {"step": step, "epoch": epoch, "batch_in_epoch": 0, "history": history,
                 "schedule": config.schedule.state()}
        ckpt.save(state)
        log.epoch_end(history)
        if config.verbose:
            print("  " + "  ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
    seconds = time.time() - started
    metrics_path = os.path.join(config.run_dir, "metrics.json")
    if images_seen == 0 and os.path.exists(metrics_path):
        if config.verbose:
            print(f"{config.run_dir} has already finished its {len(history)} epochs; nothing to do.")
        with open(metrics_path, encoding="utf-8") as f:
            return json.load(f), model
    final = {**(history[-1] if history else {}), "epochs_run": len(history), "steps": step,
             "images_per_second": images_seen / seconds if images_seen else None,
             "replicas": replicas, "dataset": source.name}
    log.finish(final)
    return final, model


def make_steps(model, optimizer, strategy, *, global_batch, classes, weight_decay, decay_biases=True,
               mixed_precision=False, xla=False):
    """The distributed train and eval steps (also timed by benchmarks/train_throughput.py).

    train_step(batch) -> (summed loss, wrong top-1), over all replicas;
    eval_step(batch) -> (summed loss, top-1 errors, top-5 errors, count).
    Weight decay is coupled L2 added to the gradient: with momentum this is
    exactly AlexNet's v <- 0.9 v - wd*lr*w - lr*dL/dw.
    """
    decayed = {id(v) for v in model.trainable_variables if decay_biases or len(v.shape) > 1}

    @tf.function(jit_compile=xla)
    def gradients(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            loss = tf.reduce_sum(per_example) / global_batch
            scaled = optimizer.scale_loss(loss) if mixed_precision else loss
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        grads = [g + weight_decay * tf.cast(v, g.dtype) if id(v) in decayed else g
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

    @tf.function
    def train_step(batch):
        return reduce_sum(strategy.run(replica_step, args=batch))

    @tf.function
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
