"""What every benchmark measures the same way: the best of repeated runs, and the machine's
float32 matmul peak measured in the same process (results are ratios to it)."""

import time

import tensorflow as tf


def best(fn, repeats, warmup=1):
    """The shortest of `repeats` timed calls of `fn`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def sgemm_peak(n=4096, repeats=5):
    """Multiply-adds per second of the fastest n x n x n float32 matmul in this process:
    TensorFlow's (tf.function; oneDNN when kzoo was imported first) or numpy's BLAS. The
    faster of the two is the machine's peak the benchmarks' fractions are taken of."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.matmul(a, b))
    a_np, b_np = a.numpy(), b.numpy()
    fastest = min(best(lambda: matmul().numpy(), repeats), best(lambda: a_np @ b_np, repeats))
    return n**3 / fastest
