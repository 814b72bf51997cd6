"""OverFeat's dense evaluation against the machine's matmul peak and against crops.

    python benchmarks/dense_vs_crops.py [--model overfeat_accurate] [--scales 6] [--crops]

Measures in one process: the sgemm peak (4096^3 matmuls), then for each Table 5 scale
the dense pass of one image (`kzoo.evaluate.dense.DenseEvaluator`): its multiply-adds,
GFLOP/s (2 FLOPs per multiply-add) and the fraction of the peak; the multiply-adds of
the same windows fed crop by crop, and the ideal ratio (crops / dense multiply-adds);
with --crops also the crops' measured time and the achieved ratio. Then the whole
multi-scale protocol of one image (6 scales x 2 flips, from the raw image: resizing
included) against the sum of its dense passes. Prints Markdown for docs/performance.md.
"""

import argparse
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.evaluate.dense import TABLE5_MAPS, DenseEvaluator, dense_input_sizes  # noqa: E402
from kzoo.utils import count_macs, layer_macs  # noqa: E402
from timing import best, sgemm_peak  # noqa: E402  (benchmarks/timing.py)


def dense_macs(model, height, width, maps):
    """Multiply-adds of one dense pass: the features at the whole input (the builder
    without its classifier), then the classifier on every window of every offset."""
    features = kzoo.create_model(model.name, include_top=False, input_shape=(height, width, 3))
    dense_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    per_window = sum(v for k, v in layer_macs(model).items() if k in {layer.name for layer in dense_layers})
    return count_macs(features) + maps.shape[1] * maps.shape[2] * per_window


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="overfeat_accurate", choices=("overfeat_fast", "overfeat_accurate"))
    parser.add_argument("--scales", type=int, default=6, help="how many of Table 5's scales")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crops", action="store_true", help="also time the windows crop by crop (slow)")
    args = parser.parse_args()
    model = kzoo.create_model(args.model)
    evaluator = DenseEvaluator(model)
    crop_macs = count_macs(model)
    peak = sgemm_peak()
    print(f"{args.model}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}; sgemm peak {2 * peak / 1e9:.0f} GFLOP/s\n")
    print("| scale | input | windows | dense GMAC | dense s | GFLOP/s | of peak | ideal ratio | achieved ratio |\n"
          "|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    sizes = dense_input_sizes(model, TABLE5_MAPS[: args.scales])
    passes = 0.0
    for k, (h, w) in enumerate(sizes, start=1):
        views = rng.normal(size=(1, h, w, 3)).astype("float32")
        maps = evaluator.score_maps(views)  # compiles this shape
        seconds = best(lambda: evaluator.score_maps(views), args.repeats, warmup=0)
        passes += 2 * seconds  # the protocol's view and its flip
        windows = maps.shape[1] * maps.shape[2]
        macs = dense_macs(model, h, w, maps)
        achieved = ""
        if args.crops:
            crops = np.repeat(views[:, : model.inputs[0].shape[1], : model.inputs[0].shape[2]], windows, axis=0)
            model.predict(crops[:32], batch_size=32, verbose=0)
            achieved = f"{best(lambda: model.predict(crops, batch_size=32, verbose=0), 1, warmup=0) / seconds:.1f}x"
        print(f"| {k} | {h}x{w} | {windows} | {macs / 1e9:.1f} | {seconds:.3f} | {2 * macs / seconds / 1e9:.0f} | "
              f"{macs / seconds / peak:.0%} | {windows * crop_macs / macs:.1f}x | {achieved} |", flush=True)
    image = rng.uniform(0, 255, size=(375, 500, 3)).astype("float32")
    evaluator.scores([image], sizes)
    whole = best(lambda: evaluator.scores([image], sizes), args.repeats, warmup=0)
    print(f"\nWhole protocol of one 375x500 image ({len(sizes)} scales x 2 flips, resizing included): "
          f"{whole:.2f} s = {whole / passes:.2f}x the sum of its dense passes ({passes:.2f} s).")


if __name__ == "__main__":
    main()
