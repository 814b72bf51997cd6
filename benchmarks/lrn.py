"""Local response normalization, forward + backward, three formulations (docs/performance.md).

    python benchmarks/lrn.py [--repeats 10]

kzoo's layer (the window sums as one matmul with a 0/1 band matrix, the power as exp/log),
the formulation it replaced (the sum of n shifted channel slices, then ops.power), and
TensorFlow's fused tf.nn.local_response_normalization, at the LRN inputs of the AlexNet
and ZFNet demos and of AlexNet at 224. Milliseconds per call, best of `repeats`.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from timing import best, sgemm_peak  # noqa: E402  (benchmarks/timing.py)

SHAPES = [("ZFNet demo lrn1 (64 px, batch 64)", (64, 15, 15, 96)),
          ("AlexNet demo lrn1 (96 px, batch 64)", (64, 23, 23, 96)),
          ("AlexNet lrn1 at 224 (batch 128)", (128, 55, 55, 96)),
          ("AlexNet lrn2 at 224 (batch 128)", (128, 27, 27, 256))]


def shifted_slices(layer):
    """The formulation kzoo used before: n shifted slices of the zero-padded squares."""
    def call(x):
        radius = layer.n // 2
        padded = ops.pad(ops.square(x), [(0, 0)] * 3 + [(radius, radius)])
        channels = x.shape[-1]
        window = padded[..., 0:channels]
        for offset in range(1, layer.n):
            window = window + padded[..., offset : offset + channels]
        return x / ops.power(layer.k + layer.effective_alpha * window, layer.beta)
    return call


def forward_backward(fn, x):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, x)
    return lambda: step().numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"sgemm peak in this process: {2 * sgemm_peak() / 1e9:.0f} GFLOP/s")
    layer = kzoo.layers.LocalResponseNormalization()  # the paper's n=5, k=2, alpha=1e-4, beta=0.75
    print(f"{'LRN input':40s} {'kzoo':>8s} {'slices':>8s} {'tf.nn':>8s}  (ms, forward + backward)")
    for name, shape in SHAPES:
        x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
        fused = lambda v: tf.nn.local_response_normalization(  # noqa: E731
            v, layer.n // 2, layer.k, layer.effective_alpha, layer.beta)
        times = [best(forward_backward(fn, x), args.repeats) * 1e3 for fn in (layer, shifted_slices(layer), fused)]
        print(f"{name:40s} " + " ".join(f"{t:8.1f}" for t in times))


if __name__ == "__main__":
    main()
