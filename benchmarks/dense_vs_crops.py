"""OverFeat's dense evaluation against the machine's matmul peak and against crops.

    python benchmarks/dense_vs_crops.py [--model overfeat_accurate] [--scales 6] [--crops]
                                        [--batch 16] [--precision float32|mixed_bfloat16]

Measures in one process: the matmul peak of the precision's compute dtype (4096^3
matmuls), then for each Table 5 scale the dense pass of `--batch` views (the evaluator's
batch: the protocol runs the views of one size together; 1: a lone image), through
`kzoo.evaluate.dense.DenseEvaluator`: its multiply-adds,
GFLOP/s (2 FLOPs per multiply-add) and the fraction of the peak; the multiply-adds of
the same windows fed crop by crop, and the ideal ratio (crops / dense multiply-adds);
with --crops also the crops' measured time and the achieved ratio. Then the whole
multi-scale protocol of one image (6 scales x 2 flips, from the raw image: resizing
included) against the sum of its dense passes. Prints Markdown for docs/performance.md.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kzoo  # noqa: E402  (first: it turns on TensorFlow's oneDNN kernels before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kzoo.evaluate.dense import TABLE5_MAPS, DenseEvaluator, dense_input_sizes  # noqa: E402
from kzoo.utils import count_macs, layer_macs  # noqa: E402
from kzoo.utils.precision import compute_dtype  # noqa: E402
from precision import cpu_line, matmul_peak  # noqa: E402  (benchmarks/precision.py)
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
    parser.add_argument("--batch", type=int, default=16, help="views per dense pass (DenseEvaluator's batch)")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    args = parser.parse_args()
    model = kzoo.create_model(args.model, dtype=args.precision)
    evaluator = DenseEvaluator(model, batch_size=args.batch)
    crop_macs = count_macs(model)
    dtype = compute_dtype(args.precision)
    peak = sgemm_peak() if dtype == "float32" else matmul_peak(dtype)
    print(f"{args.model}, {args.precision}, {args.batch} view(s) per pass; {cpu_line()}; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}; {dtype} matmul peak {2 * peak / 1e9:.0f} GFLOP/s\n")
    print("| scale | input | windows | dense GMAC | dense s | GFLOP/s | of peak | ideal ratio | achieved ratio |\n"
          "|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    sizes = dense_input_sizes(model, TABLE5_MAPS[: args.scales])
    passes = 0.0
    for k, (h, w) in enumerate(sizes, start=1):
        views = rng.normal(size=(args.batch, h, w, 3)).astype("float32")
        maps = evaluator.score_maps(views)  # compiles this shape
        seconds = best(lambda: evaluator.score_maps(views), args.repeats, warmup=0)
        passes += 2 * seconds / args.batch  # the protocol's view and its flip, per image
        windows = maps.shape[1] * maps.shape[2]
        macs = args.batch * dense_macs(model, h, w, maps)
        achieved = ""
        if args.crops:
            crops = np.repeat(views[:, : model.inputs[0].shape[1], : model.inputs[0].shape[2]], windows, axis=0)
            model.predict(crops[:32], batch_size=32, verbose=0)
            achieved = f"{best(lambda: model.predict(crops, batch_size=32, verbose=0), 1, warmup=0) / seconds:.1f}x"
        print(f"| {k} | {h}x{w} | {windows} | {macs / 1e9:.1f} | {seconds:.3f} | {2 * macs / seconds / 1e9:.0f} | "
              f"{macs / seconds / peak:.0%} | {args.batch * windows * crop_macs / macs:.1f}x | {achieved} |", flush=True)
    image = rng.uniform(0, 255, size=(375, 500, 3)).astype("float32")
    evaluator.scores([image], sizes)
    whole = best(lambda: evaluator.scores([image], sizes), args.repeats, warmup=0)
    print(f"\nWhole protocol of one 375x500 image ({len(sizes)} scales x 2 flips, resizing included): "
          f"{whole:.2f} s = {whole / passes:.2f}x the sum of its dense passes ({passes:.2f} s).")


if __name__ == "__main__":
    main()
