"""OverFeat dense evaluation vs evaluating the same windows one crop at a time.

    python benchmarks/dense_vs_crops.py [--model overfeat_accurate] [--scales 6]

For each Table 5 scale: the dense, offset-pooled map (one pass over the whole
image), and the same windows (221x221 crops every 12 pixels for the accurate
model) through the original classifier in batches of 32. Prints seconds and
the ratio, as a Markdown table for docs/performance.md.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kzoo  # noqa: E402
from kzoo.evaluate import TABLE5_SCALES, dense_model  # noqa: E402


def _stride(model):
    """Input pixels between neighbouring dense-map positions: the total stride / last pool size."""
    layers = model.layers[: [layer.name for layer in model.layers].index("flatten")]
    strided = [layer for layer in layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))]
    return int(np.prod([layer.strides[0] for layer in strided])) // layers[-1].pool_size[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="overfeat_accurate", choices=("overfeat_fast", "overfeat_accurate"))
    parser.add_argument("--scales", type=int, default=6, help="how many of Table 5's scales")
    args = parser.parse_args()
    model = kzoo.create_model(args.model)
    dense = dense_model(model)
    size, stride = model.inputs[0].shape[1], _stride(model)
    rng = np.random.default_rng(0)
    print(f"{args.model}: window {size}, dense stride {stride} px, {os.cpu_count()} CPU cores, Keras {keras.__version__}")
    print("| scale | input | map | windows | dense s | one crop at a time s | ratio |\n|---|---|---|---|---|---|---|")
    for k, (h, w) in enumerate(TABLE5_SCALES[: args.scales], start=1):
        image = rng.normal(size=(1, h, w, 3)).astype("float32")
        dense(image)  # trace
        start = time.perf_counter()
        scores = np.asarray(dense(image))
        t_dense = time.perf_counter() - start
        rows, cols = scores.shape[1:3]
        crops = np.stack([image[0, i * stride : i * stride + size, j * stride : j * stride + size]
                          for i in range(rows) for j in range(cols)])
        model.predict(crops[:2], verbose=0)
        start = time.perf_counter()
        model.predict(crops, batch_size=32, verbose=0)
        t_crops = time.perf_counter() - start
        print(f"| {k} | {h}x{w} | {rows}x{cols} | {rows * cols} | {t_dense:.2f} | {t_crops:.1f} | "
              f"{t_crops / t_dense:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
