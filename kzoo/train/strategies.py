"""tf.distribute strategies by name, and what the engine needs to know about them."""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")


_STRATEGIES = {}


def get_strategy(name):
    """The process's strategy of that name, made once. MultiWorkerMirroredStrategy must be
    made before any other TensorFlow op runs: call this before building datasets."""
    if name not in _STRATEGIES:
        _STRATEGIES[name] = make_strategy(name)
    return _STRATEGIES[name]


def make_strategy(name):
    """"default" (one device), "mirrored" (all local GPUs, else all logical CPU devices),
    "multiworker" (MultiWorkerMirroredStrategy, cluster from TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # No GPU: mirror over the logical CPU devices (one unless the CPU was split with
        # tf.config.set_logical_device_configuration, as the tests do).
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment, e.g. "
                '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown --strategy {name!r}; expected one of {STRATEGIES}.")


def is_chief():
    """True on the process that writes checkpoints and logs (worker 0 or chief)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") in (None, "worker") and task.get("index", 0) == 0


def task_id():
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"
