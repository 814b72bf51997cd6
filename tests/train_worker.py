"""Run by test_train.py in subprocesses: trains a small model and saves its weights.

    python tests/train_worker.py OUT.npz RUN_DIR STRATEGY [LOGICAL_CPUS]
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

out, run_dir, strategy = sys.argv[1:4]
if len(sys.argv) > 4:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))

import keras  # noqa: E402

from kzoo.data.sources import builtin_digits  # noqa: E402
from kzoo.data.transforms import Preprocess  # noqa: E402
from kzoo.train.engine import TrainConfig, train  # noqa: E402
from kzoo.train.schedules import StepsAt  # noqa: E402
from kzoo.train.strategies import get_strategy  # noqa: E402

get_strategy(strategy)  # before the dataset exists


def small_convnet(classes):
    """Conv + dense, no BatchNorm or dropout: replicas must then agree with one device."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x))


config = TrainConfig(
    model="custom", schedule=StepsAt(1e-5, (), 1.0), preprocess=Preprocess(resize=16, center=16, crop=16),
    run_dir=run_dir, batch_size=32, epochs=2, momentum=0.9, weight_decay=5e-4, strategy=strategy,
    steps_per_epoch=6, val_steps=2, verbose=0,
)
metrics, model = train(config, builtin_digits(), model_fn=small_convnet)
np.savez(out, *[np.asarray(w) for w in model.weights], loss=metrics["train_loss"])
print("worker done", metrics["train_loss"])
