"""The papers' analysis figures: first-layer filters (ZFNet Fig. 5; AlexNet Fig. 3, one
panel per tower) and per-filter RMS (ZFNet §3), AlexNet's nearest neighbours in the last
hidden layer (§6.1, Fig. 4 right) and ResNet's layer responses (Fig. 7)."""

import numpy as np

import keras

from kzoo.layers import TowerConv2D
from kzoo.models.features import feature_extractor
from kzoo.visualize.common import figure, get_layer, grid, hidden_layer, save_figure, to_display

CONVS = (keras.layers.Conv2D, TowerConv2D)


def _kernel(layer):
    """(kh, kw, c_in, c_out) numpy kernel; a TowerConv2D's towers concatenated on c_out
    (each tower sees its own c_in group, so every output channel is one filter)."""
    if isinstance(layer, TowerConv2D):
        return np.concatenate([keras.ops.convert_to_numpy(t.kernel) for t in layer.towers], axis=-1)
    if not hasattr(layer, "kernel"):
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no kernel.")
    return keras.ops.convert_to_numpy(layer.kernel)


def _conv_layer(model, layer):
    if layer is None:
        convs = [l for l in model.layers if isinstance(l, CONVS)]
        if not convs:
            raise ValueError(f"{model.name!r} has no Conv2D/TowerConv2D layer.")
        return convs[0]
    found = get_layer(model, layer)
    if not isinstance(found, CONVS):
        raise ValueError(f"Layer {layer!r} is a {type(found).__name__}, not a convolution.")
    return found


def first_layer_filters(model, layer=None):
    """(N, kh, kw, c_in) kernels of `layer` (default: the first convolution in graph order)."""
    return np.transpose(_kernel(_conv_layer(model, layer)), (3, 0, 1, 2))


NOISE_CORRELATION = 0.1  # below it, filters look like their random start (learned ones are smooth)


def neighbour_correlation(filters):
    """The correlation of horizontally and vertically adjacent weights of (N, kh, kw, c_in)
    filters, each filter's mean removed: about 0 for a random start (independent draws),
    clearly positive for learned filters (edges, blobs, colour patches are smooth); None for
    1x1 kernels."""
    f = np.asarray(filters, np.float64)
    if f.shape[1] < 2 and f.shape[2] < 2:
        return None
    f = f - f.mean(axis=(1, 2, 3), keepdims=True)
    a = np.concatenate([f[:, :, :-1].ravel(), f[:, :-1].ravel()])
    b = np.concatenate([f[:, :, 1:].ravel(), f[:, 1:].ravel()])
    return float(np.corrcoef(a, b)[0, 1])


def noise_note(model, layer=None):
    """A line saying that the filters are still noise-like (a short run), or None."""
    r = neighbour_correlation(first_layer_filters(model, layer))
    if r is None or r >= NOISE_CORRELATION:
        return None
    return (f"note: these filters are still close to their random start (neighbouring weights correlate at "
            f"r = {r:.2f}; learned filters are smooth, r above {NOISE_CORRELATION}): the run is short. ZFNet's "
            f"Fig. 5 shows filters after 70 epochs of ImageNet.")


def _consumer(model, tensor):
    """The first layer (graph order) that reads `tensor` and how many inputs it has, or (None, 0)."""
    for layer in model.layers:
        try:
            inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        except (AttributeError, ValueError):  # a shared layer has no single input
            continue
        if any(t is tensor for t in inputs) and layer.output is not tensor:
            return layer, len(inputs)
    return None, 0


def _feeding_towers(model, conv):
    """The TowerConv2D whose towers split `conv`'s channels, reached through layers that
    keep the channels where they are (ReLU, LRN, pooling, padding, dropout), or None."""
    tensor, channels = conv.output, conv.output.shape[-1]
    while True:
        layer, inputs = _consumer(model, tensor)
        if isinstance(layer, TowerConv2D):
            return layer
        if layer is None or inputs != 1 or isinstance(layer, (*CONVS, keras.layers.Dense)) or \
                len(layer.output.shape) != 4 or layer.output.shape[-1] != channels:
            return None
        tensor = layer.output


def filter_groups(model, layer=None):
    """[(title, filter indices)] of `layer` (default: the first convolution), one entry per
    tower (AlexNet Fig. 3: conv1's 96 filters as 48 + 48, one group per GPU), else one.

    A TowerConv2D's groups are its own towers. A single Conv2D whose output reaches a
    TowerConv2D through channel-keeping layers (AlexNet's conv1 -> relu1 -> lrn1 -> pool1
    -> conv2) is grouped as that layer splits its input: filter i feeds tower
    i // (filters / towers), as in the paper, where each GPU's conv1 kernels fed only its
    own half of conv2. (kzoo's lrn1 spans all 96 maps, so near the boundary it mixes
    2 maps of the other tower; the paper normalized each GPU's maps on their own.)"""
    conv = _conv_layer(model, layer)
    n = _kernel(conv).shape[-1]
    if isinstance(conv, TowerConv2D):
        towers, names = conv.num_towers, [t.name for t in conv.towers]
    else:
        consumer = _feeding_towers(model, conv)
        if consumer is None or consumer.num_towers == 1:
            return [(f"{conv.name}: {n} filters", np.arange(n))]
        towers, names = consumer.num_towers, [f"feed {t.name}" for t in consumer.towers]
    size = n // towers
    return [(f"{conv.name} filters {i * size}-{(i + 1) * size - 1}: tower {i} ({name})",
             np.arange(i * size, (i + 1) * size)) for i, name in enumerate(names)]


def filter_grid_plot(model, layer=None, columns=None):
    """ZFNet Fig. 5 / AlexNet Fig. 3: every filter min-max normalized on its own, one grid
    per group of `filter_groups` (a panel per tower, stacked), `columns` filters wide
    (default: 16 for 48 filters a tower as in Fig. 3; one grid: square). Returns the figure."""
    conv = _conv_layer(model, layer)
    filters = first_layer_filters(model, conv.name)
    if filters.shape[-1] not in (1, 3):
        raise ValueError(f"Layer {conv.name!r} has {filters.shape[-1]} input channels; only 1 or 3 "
                         "can be shown as images (use the first layer).")
    groups = filter_groups(model, conv.name)
    # Towers: Fig. 3's shape, 16 x 3 for each GPU's 48 kernels; one grid: square.
    per_panel = len(filters) if len(groups) == 1 else len(groups[0][1]) * 16 / 3
    columns = columns or int(np.ceil(np.sqrt(per_panel)))
    width = max(4.0, 0.6 * columns)
    fig, axes = figure(len(groups), 1, size=width)
    height = 0.0
    for ax, (title, indices) in zip(axes[:, 0], groups):
        mosaic = grid([to_display(filters[i]) for i in indices], columns)
        ax.imshow(mosaic, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title)
        height += width * mosaic.shape[0] / mosaic.shape[1] + 0.5  # the panel and its title
    fig.set_size_inches(width, height)
    return fig


def filter_grid_figure(model, path, layer=None, columns=None):
    """The PNG of `filter_grid_plot` at `path`; returns `path`."""
    return save_figure(filter_grid_plot(model, layer, columns), path)


def filter_rms(model, layer_names=None):
    """{layer: (c_out,) RMS of each filter}, over (kh, kw, c_in) as `FilterRMSNorm` takes it.
    Default: every Conv2D/TowerConv2D layer, in graph order."""
    if layer_names is None:
        layers = [l for l in model.layers if isinstance(l, CONVS)]
    else:
        layers = [get_layer(model, name) for name in layer_names]
    out = {}
    for layer in layers:
        w = _kernel(layer)
        out[layer.name] = np.sqrt(np.mean(np.square(w), axis=tuple(range(w.ndim - 1))))
    return out


def rms_report(rms, radius=None):
    """A text table of `filter_rms` output; with `radius`, how many filters exceed it."""
    head = f"{'layer':<24}{'filters':>8}{'min RMS':>12}{'mean RMS':>12}{'max RMS':>12}"
    if radius is not None:
        head += f"{f'> {radius:g}':>10}"
    lines = [head]
    for name, values in rms.items():
        values = np.asarray(values)
        line = f"{name:<24}{values.size:>8}{values.min():>12.6g}{values.mean():>12.6g}{values.max():>12.6g}"
        if radius is not None:
            line += f"{int(np.sum(values > radius)):>10}"
        lines.append(line)
    return "\n".join(lines)


def _batches(model, layers, images, batch_size):
    """Yields each batch's outputs of `layers` in inference mode, as a list of numpy arrays."""
    features = feature_extractor(model, layers)
    images = np.asarray(images)
    for start in range(0, len(images), batch_size):
        out = features.predict_on_batch(images[start:start + batch_size])
        yield [np.asarray(out[name]) for name in layers]


def hidden_features(model, images, layer=None, batch_size=32):
    """(N, D) activations of `layer` (flattened), inference mode. Default: the last hidden
    FC ReLU (relu7 of AlexNet, relu8 of OverFeat accurate) or, without one, ResNet's avg_pool."""
    batches = _batches(model, [layer or hidden_layer(model)], images, batch_size)
    feats = [out[0].reshape(len(out[0]), -1) for out in batches]
    return np.concatenate(feats, axis=0)


def nearest_neighbours(query_features, train_features, k=5, chunk=256):
    """Exact Euclidean k nearest training items of each query: (indices, distances), each
    (Q, k), ascending (ties by index). Candidates come from |q|^2 + |t|^2 - 2 q.t in
    float64; their distances are then recomputed from the differences, so an identical
    item is at distance exactly 0."""
    q = np.asarray(query_features, np.float64)
    t = np.asarray(train_features, np.float64)
    if q.ndim != 2 or t.ndim != 2 or q.shape[1] != t.shape[1]:
        raise ValueError(f"Features must be (Q, D) and (N, D); got {q.shape} and {t.shape}.")
    if not 1 <= k <= len(t):
        raise ValueError(f"k must be in [1, {len(t)}] (the training items); got {k}.")
    t_sq = np.sum(t * t, axis=1)
    indices, distances = [], []
    for start in range(0, len(q), chunk):
        qc = q[start:start + chunk]
        d2 = np.sum(qc * qc, axis=1)[:, None] + t_sq[None, :] - 2.0 * qc @ t.T
        cand = np.argpartition(d2, k - 1, axis=1)[:, :k]
        exact = np.sqrt(np.sum(np.square(qc[:, None, :] - t[cand]), axis=-1))
        order = np.lexsort((cand, exact))
        indices.append(np.take_along_axis(cand, order, axis=1))
        distances.append(np.take_along_axis(exact, order, axis=1))
    return np.concatenate(indices), np.concatenate(distances)


def _show(image):
    """Images already in [0, 1] (or uint8) are shown as they are; anything else min-max."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if image.min() < 0 or image.max() > 1:
        return to_display(image)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def neighbours_figure(query_images, train_images, indices, path):
    """AlexNet Fig. 4 (right): each row a query, then its neighbours; returns `path`."""
    indices = np.asarray(indices)
    rows, k = indices.shape
    fig, axes = figure(rows, k + 1, size=1.5)
    for r in range(rows):
        axes[r, 0].imshow(_show(query_images[r]))
        for j, i in enumerate(indices[r], start=1):
            axes[r, j].imshow(_show(train_images[i]))
        for ax in axes[r]:
            ax.set_axis_off()
    axes[0, 0].set_title("query")
    return save_figure(fig, path)


def _response_layers(model):
    """BatchNormalization layers fed directly by a 3x3 Conv2D, in graph order."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            source = layer.input._keras_history.operation
            if isinstance(source, keras.layers.Conv2D) and tuple(source.kernel_size) == (3, 3):
                names.append(layer.name)
    if not names:
        raise ValueError(f"{model.name!r} has no BatchNormalization after a 3x3 convolution; layer "
                         "responses (He et al. Fig. 7) are defined for ResNets and their plain nets.")
    return names


def layer_responses(model, images, batch_size=32):
    """ResNet Fig. 7: [(bn layer, std)] for each 3x3 conv's BN output (after BN, before
    the addition and ReLU), in graph order, in inference mode. std is each channel's
    population std over batch and positions, averaged over the channels (the paper does
    not say how it pools; per-channel keeps BN's per-channel scale from mixing in)."""
    names = _response_layers(model)
    stats = None  # per layer: (count, mean, M2) of each channel
    for outs in _batches(model, names, images, batch_size):
        # Chan et al.'s merge of per-channel statistics, so batches need not be kept.
        batch = []
        for o in outs:
            f = o.reshape(-1, o.shape[-1]).astype(np.float64)  # layers differ in positions
            batch.append((len(f), f.mean(axis=0), np.sum(np.square(f - f.mean(axis=0)), axis=0)))
        if stats is None:
            stats = batch
            continue
        merged = []
        for (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) in zip(stats, batch):
            n, delta = n_a + n_b, mean_b - mean_a
            merged.append((n, mean_a + delta * n_b / n, m2_a + m2_b + np.square(delta) * n_a * n_b / n))
        stats = merged
    if stats is None:
        raise ValueError("layer_responses needs at least one image.")
    return [(name, float(np.mean(np.sqrt(m2 / n)))) for name, (n, _, m2) in zip(names, stats)]


def responses_figure(results, path):
    """{label: [(name, std)]} -> He et al. Fig. 7: std in layer order (top) and sorted
    descending (bottom); returns `path`."""
    if not results:
        raise ValueError("responses_figure needs at least one {label: layer_responses(...)} entry.")
    fig, axes = figure(2, 1, size=4.0)
    for label, pairs in results.items():
        std = np.array([s for _, s in pairs])
        x = np.arange(1, len(std) + 1)
        axes[0, 0].plot(x, std, label=label)
        axes[1, 0].plot(x, np.sort(std)[::-1], label=label)
    axes[0, 0].set_xlabel("layer index (original)")
    axes[1, 0].set_xlabel("layer index (sorted by magnitude)")
    for ax in axes[:, 0]:
        ax.set_ylabel("std")
        ax.legend()
    return save_figure(fig, path)
