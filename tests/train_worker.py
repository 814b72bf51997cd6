"""The small run that test_distributed.py and test_curves.py repeat under each strategy and precision.

    [TRAIN_PRECISION=mixed_bfloat16] python tests/train_worker.py OUT.npz RUN_DIR STRATEGY [LOGICAL_CPUS]

STRATEGY "default" is the one-process reference; "mirrored" (over LOGICAL_CPUS
devices) and "multiworker" (one process per worker, cluster from TF_CONFIG)
must end where it ends. OUT holds the final weights (w0, w1, ...), the initial
ones (init0, init1, ...), the last epoch's train_loss and the replica count.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def small_convnet(initial):
    """A model builder: conv + dense, no BatchNorm or dropout (replicas then agree with one
    device); it appends the fresh weights to the list `initial`."""
    import keras

    def build(classes):
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Rescaling(1 / 128)(inputs)  # the digits are ~±100 after the mean; loss ~2.3
        x = keras.layers.Conv2D(8, 3, activation="relu")(x)
        x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
        model = keras.Model(inputs, keras.layers.Dense(classes)(x))
        initial.extend(np.array(w) for w in model.get_weights())
        return model

    return build


def small_config(run_dir, **changes):
    """AlexNet's lr, momentum and decay on 12 steps of 32 digits at 16x16."""
    from kzoo.preprocessing import Preprocess
    from kzoo.train.engine import TrainConfig
    from kzoo.train.schedules import StepsAt

    settings = dict(model="custom", schedule=StepsAt(0.01, (), 1.0), preprocess=Preprocess(resize=16, center=16, crop=16),
                    batch_size=32, epochs=2, momentum=0.9, weight_decay=5e-4, steps_per_epoch=6, val_steps=2,
                    log_every=1, verbose=0)
    return TrainConfig(run_dir=str(run_dir), **{**settings, **changes})


def main(out, run_dir, strategy, logical_cpus=None):
    import tensorflow as tf

    if logical_cpus:  # before TensorFlow initialises its devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(logical_cpus))

    from kzoo.data.sources import builtin_digits
    from kzoo.train.engine import train
    from kzoo.train.strategies import get_strategy

    get_strategy(strategy)  # before the dataset exists
    initial = []
    precision = os.environ.get("TRAIN_PRECISION")  # e.g. mixed_bfloat16: the same run in that precision
    metrics, model = train(small_config(run_dir, strategy=strategy, precision=precision), builtin_digits(),
                           model_fn=small_convnet(initial))
    final = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    np.savez(out, **final, **{f"init{i}": w for i, w in enumerate(initial)}, loss=metrics["train_loss"],
             replicas=metrics["replicas"])
    print("worker done", metrics["train_loss"])


if __name__ == "__main__":
    main(*sys.argv[1:])
