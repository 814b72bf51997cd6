"""Engine train-step CPU time with TensorFlow's own kernels vs oneDNN's (docs/performance.md).

    python benchmarks/onednn_steps.py [--steps 2] [--only overfeat_fast]

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, so each measurement runs in
its own process. Random data, op determinism on (as the engine trains), 2 warm-up steps.
"""

import argparse
import os
import subprocess
import sys

CASES = [("overfeat_fast", 80, 64), ("zfnet", 64, 64), ("alexnet", 96, 64), ("resnet20", 32, 128)]

ONE = """
import sys, time
import keras, numpy as np, tensorflow as tf
import kzoo
from kzoo.train.engine import make_steps
name, size, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tf.config.experimental.enable_op_determinism()
keras.utils.set_random_seed(0)
model = kzoo.create_model(name, input_shape=(size, size, 3), classes=10, classifier_activation=None)
optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
optimizer.build(model.trainable_variables)
step, _ = make_steps(model, optimizer, tf.distribute.get_strategy(), global_batch=batch, classes=10,
                     weight_decay=5e-4)
rng = np.random.default_rng(0)
data = (tf.constant(rng.normal(size=(batch, size, size, 3)), tf.float32),
        tf.constant(rng.integers(0, 10, batch), tf.int32))
for _ in range(2):
    float(step(data)[0])
start = time.process_time()
for _ in range(steps):
    float(step(data)[0])
print((time.process_time() - start) / steps)
"""


def cpu_seconds(name, size, batch, steps, onednn):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    out = subprocess.run([sys.executable, "-c", ONE, name, str(size), str(batch), str(steps)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--only", help="one model of the table")
    args = parser.parse_args()
    print("| model | input | batch | TF's kernels | oneDNN |\n|---|---|---|---|---|")
    for name, size, batch in CASES:
        if args.only in (None, name):
            own, onednn = (cpu_seconds(name, size, batch, args.steps, flag) for flag in ("0", "1"))
            print(f"| {name} | {size} | {batch} | {own:.2f} | {onednn:.2f} |", flush=True)


if __name__ == "__main__":
    main()
