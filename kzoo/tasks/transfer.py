"""ZFNet §5.2-5.3: a new softmax on frozen features, per-layer analysis, from scratch.

Layers 1-7 stay as trained; each image's features (the last hidden layer: relu7 of
AlexNet/ZFNet) are computed once, cached in the run directory, and reused by every
fold and epoch, so the softmax trains in seconds. Images are seen as the model was
validated (kzoo.load's centre view: its preprocessing and mean).
"""

import contextlib
import hashlib
import json
import os

import numpy as np

import keras

from kzoo.data.caltech import mean_per_class_accuracy, protocol_folds
from kzoo.models.features import feature_extractor
from kzoo.utils.files import atomic_write
from kzoo.utils.graphs import released_custom_gradients
from kzoo.utils.progress import progress_bar
from kzoo.visualize.common import figure, hidden_layer, save_figure
from kzoo.weights.record import save_weights_atomic


def per_layer_names(model):
    """ZFNet Table 6's layers 1..7 (for OverFeat accurate 1..8): each conv stage's
    pooled (or rectified) output, then the hidden FC ReLUs."""
    names = {layer.name for layer in model.layers}
    out, stage = [], 1
    while f"relu{stage}" in names:
        out.append(f"pool{stage}" if f"pool{stage}" in names else f"relu{stage}")
        stage += 1
    if not out:
        raise ValueError(f"the per-layer analysis follows the AlexNet family's layers (relu1, pool1, ...); "
                         f"{model.name!r} has none of them.")
    return out


def _key(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def extract_features(trained, collection, layers, cache_dir=None, identity=None, batch_size=32):
    """{layer: (N, D) float32} for every image of `collection` (its centre views, as `trained`
    (kzoo.load) validates), computed in one pass.

    With `cache_dir`, features are stored there (atomically) under a key made of
    `identity` (the weights), the layers, the dataset and its size, and reused.
    """
    model, mean = trained.model, trained.mean
    path = None
    if cache_dir:
        excluded = getattr(collection, "excluded", ())  # two exclusions of one size must not share features
        key = _key(identity, layers, collection.name, len(collection.images), collection.class_names,
                   np.asarray(mean).round(4).tolist(), trained.preprocessing.to_dict(),
                   *([list(excluded)] if excluded else []))  # only when set: earlier caches keep their keys
        path = os.path.join(cache_dir, f"features-{key}.npz")
        if os.path.exists(path):
            with np.load(path) as cached:
                return {layer: cached[layer] for layer in layers}
    extractor = feature_extractor(model, layers)
    chunks = {layer: [] for layer in layers}
    progress = progress_bar(len(collection.images), unit_name="image")
    for start in range(0, len(collection.images), batch_size):
        idx = range(start, min(start + batch_size, len(collection.images)))
        batch = trained.preprocess([collection.read(i) for i in idx])
        outs = extractor(batch, training=False)
        for layer in layers:
            chunks[layer].append(keras.ops.convert_to_numpy(outs[layer]).reshape(len(batch), -1).astype(np.float32))
        progress.add(len(batch))
    features = {layer: np.concatenate(chunks[layer]) for layer in layers}
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, **features)
    return features


def _standardized(features):
    """float64 features, their mean and std (constant features, dead units, keep std 1: they stay at 0)."""
    features = np.asarray(features, np.float64)
    mean, std = features.mean(0), features.std(0)
    std[std < 1e-8] = 1.0
    return features, mean, std


def _folded_head(coef, bias, mean, std, activation, name):
    """One Keras Dense layer computing `activation(coef @ ((x - mean) / std) + bias)` on raw features."""
    dense = keras.layers.Dense(len(bias), activation=activation, name=activation)
    model = keras.Sequential([keras.Input((len(mean),)), dense], name=name)
    dense.set_weights([(coef / std).T.astype(np.float32), (bias - coef @ (mean / std)).astype(np.float32)])
    return model


def train_softmax(features, labels, classes, C=1.0, seed=0, sample_weight=None):
    """A softmax (multinomial logistic regression, L2 strength 1/C) on fixed features,
    trained to convergence (L-BFGS) on standardized features; returned as one Keras
    Dense layer with the standardization folded in, so it sits on the frozen network.
    `sample_weight`: per-example weights (multi-label targets spread over rows)."""
    from sklearn.linear_model import LogisticRegression

    features, mean, std = _standardized(features)
    labels = np.asarray(labels)
    fit = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(
        (features - mean) / std, labels, sample_weight=sample_weight)
    coef = np.zeros((classes, features.shape[1]))
    bias = np.full(classes, -1e9)  # a class without training images is never predicted
    if len(fit.classes_) == 2:  # sklearn keeps one row for two classes: logit of the second
        coef[fit.classes_[1]], bias[fit.classes_] = fit.coef_[0], (0.0, fit.intercept_[0])
    else:
        coef[fit.classes_], bias[fit.classes_] = fit.coef_, fit.intercept_
    return _folded_head(coef, bias, mean, std, "softmax", "transfer_softmax")


def train_logistic(features, targets, C=1.0, seed=0, ignore=None):
    """One logistic regression per column of the (N, C) 0/1 `targets` (per-class
    sigmoids, L2 strength 1/C) on standardized fixed features; rows where `ignore`
    (N, C) is set are left out of that class's fit. Returned as one Keras Dense layer
    with sigmoid outputs, the standardization folded in."""
    from sklearn.linear_model import LogisticRegression

    features, mean, std = _standardized(features)
    targets = np.asarray(targets, bool)
    keep = np.ones_like(targets) if ignore is None else ~np.asarray(ignore, bool)
    x = (features - mean) / std
    coef, bias = np.zeros((targets.shape[1], features.shape[1])), np.zeros(targets.shape[1])
    for c in range(targets.shape[1]):
        y = targets[keep[:, c], c]
        if y.all() or not y.any():  # one-sided: a constant score (the class's AP is then chance)
            bias[c] = 30.0 if y.all() else -30.0
            continue
        fit = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x[keep[:, c]], y)
        coef[c], bias[c] = fit.coef_[0], fit.intercept_[0]
    return _folded_head(coef, bias, mean, std, "sigmoid", "transfer_logistic")


def linear_svm(train_x, train_y, test_x, seed=0):
    """scikit-learn's linear SVM on standardized features; returns test predictions."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    svm = make_pipeline(StandardScaler(), LinearSVC(C=1.0, dual="auto", random_state=seed, max_iter=5000))
    return svm.fit(train_x, train_y).predict(test_x)


def transfer_model(model, layer, softmax):
    """`model` up to `layer` (its weights untouched) followed by the trained softmax."""
    features = feature_extractor(model, [layer]).output[layer]
    outputs = softmax(keras.layers.Flatten(name="transfer_flatten")(features) if len(features.shape) > 2
                      else features)
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_transfer")


def from_scratch(model_fn, collection, trained, train_idx, test_idx, epochs, batch_size=32, seed=0):
    """ZFNet's baseline: layers 1-7 reset to random values and trained with the softmax
    on the fold's images (flips as augmentation), seen as `trained` sees them. Returns test
    predictions."""
    keras.utils.set_random_seed(seed)
    model = model_fn()
    load = lambda idx: trained.preprocess([collection.read(i) for i in idx])  # noqa: E731
    x, y = load(train_idx), collection.labels[train_idx]
    x = np.concatenate([x, x[:, :, ::-1]])
    y = np.concatenate([y, y])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    with released_custom_gradients():
        model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return np.argmax(model.predict(load(test_idx), batch_size=batch_size, verbose=0), axis=1)


def run_protocol(trained, collection, per_class, test_max, folds=5, seed=0, layer=None, C=1.0,
                 run_dir=None, identity=None, per_layer=None, scratch_fn=None, scratch_epochs=30):
    """The §5.2 protocol for each training size in `per_class`; returns the results dict
    (mean per-class accuracy per fold, mean and std) and writes results.json/.md in
    `run_dir`. per_layer: "svm" or "softmax" adds Table 6 (every layer's features)."""
    model = trained.model
    layer = layer or hidden_layer(model)
    layers = per_layer_names(model) if per_layer else [layer]
    if layer not in layers:
        layers.append(layer)
    settings = {"identity": identity, "dataset": collection.name, "images": len(collection.images),
                "per_class": list(per_class), "test_max": test_max, "folds": folds, "seed": seed, "layer": layer,
                "C": C, "per_layer": per_layer, "from_scratch": bool(scratch_fn), "scratch_epochs": scratch_epochs}
    claim_results(run_dir, settings)  # before the features: a refused run costs nothing
    features = extract_features(trained, collection, layers, run_dir, identity)
    classes = len(collection.class_names)
    results = {"dataset": collection.name, "classes": classes, "images": len(collection.images), "layer": layer,
               "folds": folds, "seed": seed, "test_max": test_max, "rows": [],
               "settings": json.loads(json.dumps(settings, default=str))}
    for n in per_class:
        splits = protocol_folds(collection.labels, collection.class_names, n, test_max, folds, seed)
        # row label -> (classifier, feature layer); the §5.2 result comes first, whatever else is asked
        methods = {f"softmax({layer})": ("softmax", layer)}
        if per_layer:
            methods.update({f"{per_layer}({name})": (per_layer, name) for name in layers})
        if scratch_fn:
            methods["from scratch"] = ("scratch", None)
        accuracies = {label: [] for label in methods}
        for fold, (train_idx, test_idx) in enumerate(splits):
            y_train, y_test = collection.labels[train_idx], collection.labels[test_idx]
            for label, (kind, name) in methods.items():
                if kind == "scratch":
                    pred = from_scratch(scratch_fn, collection, trained, train_idx, test_idx, scratch_epochs,
                                        seed=seed + fold)
                elif kind == "svm":
                    pred = linear_svm(features[name][train_idx], y_train, features[name][test_idx], seed=seed + fold)
                else:
                    softmax = train_softmax(features[name][train_idx], y_train, classes, C, seed=seed + fold)
                    pred = np.argmax(softmax.predict(features[name][test_idx], verbose=0), axis=1)
                    if run_dir and name == layer and fold == len(splits) - 1:
                        save_weights_atomic(transfer_model(model, layer, softmax),
                                            os.path.join(run_dir, f"transfer-{n}.weights.h5"))
                accuracies[label].append(mean_per_class_accuracy(y_test, pred, classes))
            print(f"  {n}/class fold {fold + 1}/{folds}: "
                  + ", ".join(f"{m} {v[-1]:.2%}" for m, v in accuracies.items()))
        for method, accs in accuracies.items():
            results["rows"].append({"per_class": n, "method": method, "train_images": n * classes,
                                    "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                                    "folds": [float(a) for a in accs]})
    if run_dir:
        write_results(run_dir, results, results_table(results))
    return results


def claim_results(run_dir, settings):
    """Refuse a results folder that holds other results (another run's results.json, or a
    results.md without kzoo's results.json beside it): nothing finished is replaced. The same
    settings may write again (a rerun)."""
    if not run_dir:
        return
    path, table = os.path.join(run_dir, "results.json"), os.path.join(run_dir, "results.md")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        before = previous.get("settings") if isinstance(previous, dict) else None
        if before != json.loads(json.dumps(settings, default=str)):
            raise ValueError(f"--out {run_dir!r} holds the results of another run ({path}: settings {before}); this "
                             f"one would replace them. Pick another --out, or move them away.")
    elif os.path.exists(table):
        raise ValueError(f"--out {run_dir!r} holds a results.md without kzoo's results.json beside it; this run "
                         f"would replace it. Pick another --out.")


def write_results(run_dir, results, table):
    """results.json and results.md (the table) in `run_dir`, each written atomically."""
    os.makedirs(run_dir, exist_ok=True)
    with atomic_write(os.path.join(run_dir, "results.json")) as f:
        json.dump(results, f, indent=2)
    with atomic_write(os.path.join(run_dir, "results.md")) as f:
        f.write(table)


CURVE = "curve.png"  # ZFNet Fig. 7, in the results folder


def curve_figure(results, paper=None):
    """ZFNet Fig. 7 (arXiv text: Fig. 9): mean per-class accuracy (%) against training images
    per class, a line per method of `results` (run_protocol's): the mean over folds, ± their std
    as error bars. `paper` (a kzoo.data.caltech.DATASETS entry's) adds the paper's points in the
    colour of the method they compare with, dotted with open squares: pretrained beside the §5.2
    softmax, from scratch beside `from scratch` when that ran. Returns the figure."""
    fig, axes = figure(size=5.0)
    ax = axes[0, 0]
    methods = {}
    for row in results["rows"]:
        methods.setdefault(row["method"], []).append(row)
    colours = {}
    for method, rows in methods.items():
        rows = sorted(rows, key=lambda r: r["per_class"])
        bars = ax.errorbar([r["per_class"] for r in rows], [100 * r["accuracy_mean"] for r in rows],
                           yerr=[100 * r["accuracy_std"] for r in rows], marker="o", capsize=3, label=method)
        colours[method] = bars.lines[0].get_color()
    compared = (("pretrained", f"softmax({results['layer']})"), ("scratch", "from scratch"))
    for key, method in compared if paper else ():
        if method in methods:
            n, accuracy, std = zip(*paper[key])
            ax.errorbar(n, accuracy, yerr=[np.nan if s is None else s for s in std], color=colours[method],
                        marker="s", fillstyle="none", linestyle=":", capsize=3,
                        label=f"paper, {'pretrained' if key == 'pretrained' else 'from scratch'} "
                              f"(ZFNet {paper['table']})")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("mean per-class accuracy (%)")
    ax.set_title(f"{results['dataset']}: mean ± std over {results['folds']} folds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def write_curve(run_dir, results, paper=None):
    """RUN/curve.png (`curve_figure`, written atomically) when `results` holds several training
    sizes; returns its path. One size is a point, not a curve: nothing is drawn (results.md has
    the number), a curve an earlier run left in `run_dir` is removed (it would show numbers
    results.json no longer holds), and None is returned."""
    path = os.path.join(run_dir, CURVE)
    if len({row["per_class"] for row in results["rows"]}) < 2:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return None
    return save_figure(curve_figure(results, paper), path)


def results_table(results):
    lines = [f"{results['dataset']}: mean per-class accuracy over {results['folds']} folds "
             f"(seed {results['seed']}, test up to {results['test_max']} images per class)", "",
             "| training images / class | method | accuracy (mean ± std) |", "|---|---|---|"]
    for row in results["rows"]:
        lines.append(f"| {row['per_class']} | {row['method']} | "
                     f"{row['accuracy_mean']:.1%} ± {row['accuracy_std']:.1%} |")
    return "\n".join(lines) + "\n"
