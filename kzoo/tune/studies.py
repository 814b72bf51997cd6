"""The papers' architecture studies as data: one `Row` per row of the paper's table
(a registered builder, its options, the training run's own settings, the paper's numbers)
and the knobs a free-form search may turn. Every row is built by the kzoo builders;
nothing is redefined here."""

import dataclasses

TUNERS = ("grid", "random", "hyperband", "bayesian")  # kzoo.tune.search builds each


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    model: str
    options: dict
    paper: dict  # column -> the paper's number (error %), or {} where it gives none
    run: dict = dataclasses.field(default_factory=dict)  # kzoo.recipes.common.Run fields, e.g. {"pca_std": 0.0}


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    paper: str
    recipe: str  # the kzoo.recipes module whose schedule and data pipeline train each trial
    columns: tuple  # the paper's columns, in order
    rows: tuple
    knobs: dict  # free-form search: name -> values; `to_model(values)` -> (model, options[, run fields])
    to_model: object = None
    curves: tuple = ()  # (panel, row labels): OUT/curves-<panel>.png over those trials, as the paper's figure
    over_seeds: dict = None  # the paper's best / mean / std over runs that differ in seed only (its rows)

    def row(self, label):
        for row in self.rows:
            if row.label == label:
                return row
        raise ValueError(f"{self.name} has no row {label!r}; rows: {[r.label for r in self.rows]}.")


def _p(train, val1, val5):
    return {"train top-1": train, "val top-1": val1, "val top-5": val5}


_ALEX1 = dict(towers=1, one_tower="full")  # ZFNet's single-GPU AlexNet replication
_MAPS = (512, 1024, 512)

ZFNET_TABLE3 = Study(
    name="zfnet-table3",
    paper="Zeiler & Fergus 2013, Table 2 (arXiv text: Table 3), error %",
    recipe="zfnet",
    columns=("train top-1", "val top-1", "val top-5"),
    rows=(
        Row("AlexNet replication, 1 convnet", "alexnet", _ALEX1, _p(35.1, 40.5, 18.1)),
        Row("removed layers 3,4", "alexnet", {**_ALEX1, "remove_layers": (3, 4)}, _p(41.8, 45.4, 22.1)),
        Row("removed layer 7", "alexnet", {**_ALEX1, "remove_layers": (7,)}, _p(27.4, 40.0, 18.4)),
        Row("removed layers 6,7", "alexnet", {**_ALEX1, "remove_layers": (6, 7)}, _p(27.4, 44.8, 22.4)),
        Row("removed layers 3,4,6,7", "alexnet", {**_ALEX1, "remove_layers": (3, 4, 6, 7)}, _p(71.1, 71.3, 50.1)),
        Row("layers 6,7: 2048 units", "alexnet", {**_ALEX1, "fc_units": 2048}, _p(40.3, 41.7, 18.8)),
        Row("layers 6,7: 8192 units", "alexnet", {**_ALEX1, "fc_units": 8192}, _p(26.8, 40.0, 18.1)),
        Row("ZF model (Fig. 3)", "zfnet", {}, _p(33.1, 38.4, 16.5)),
        Row("ZF, layers 6,7: 2048 units", "zfnet", {"fc_units": 2048}, _p(38.2, 40.2, 17.6)),
        Row("ZF, layers 6,7: 8192 units", "zfnet", {"fc_units": 8192}, _p(22.0, 38.8, 17.0)),
        Row("ZF, layers 3,4,5: 512,1024,512 maps", "zfnet", {"conv_maps": _MAPS}, _p(18.8, 37.5, 16.0)),
        Row("ZF, 6,7: 8192 units and 3,4,5: 512,1024,512 maps", "zfnet", {"fc_units": 8192, "conv_maps": _MAPS},
            _p(10.0, 38.3, 16.9)),
    ),
    knobs={"base": ["alexnet", "zfnet"], "remove_layers": ["none", "3,4", "7", "6,7", "3,4,6,7"],
           "fc_units": [2048, 4096, 8192], "conv_maps": ["paper", "512,1024,512"]},
    to_model=lambda v: (v["base"], {
        **(_ALEX1 if v["base"] == "alexnet" else {}),
        "remove_layers": () if v["remove_layers"] == "none" else tuple(int(x) for x in v["remove_layers"].split(",")),
        "fc_units": v["fc_units"],
        "conv_maps": None if v["conv_maps"] == "paper" else _MAPS}),
)


def _d(top1, top5):
    return {"Δ top-1 vs paper net": top1, "Δ top-5 vs paper net": top5}


ALEXNET_DESIGN = Study(
    name="alexnet-design",
    paper="Krizhevsky et al. 2012, §3.2-3.4 and §7: error change against the paper's net, %",
    recipe="alexnet",
    columns=("Δ top-1 vs paper net", "Δ top-5 vs paper net"),
    rows=(
        Row("paper net: two towers, LRN, overlapping pooling", "alexnet", {}, _d(0.0, 0.0)),
        Row("one tower, half the kernels (§3.2)", "alexnet", {"towers": 1}, _d(1.7, 1.2)),
        Row("no LRN (§3.3)", "alexnet", {"lrn": False}, _d(1.4, 1.2)),
        Row("non-overlapping pooling 2x2 s2 (§3.4)", "alexnet", {"overlapping_pool": False}, _d(0.4, 0.3)),
        Row("removed conv3 (§7)", "alexnet", {"remove_layers": (3,)}, {"Δ top-1 vs paper net": 2.0}),
        Row("removed conv4 (§7)", "alexnet", {"remove_layers": (4,)}, {"Δ top-1 vs paper net": 2.0}),
    ),
    knobs={"towers": [1, 2], "lrn": [True, False], "overlapping_pool": [True, False],
           "remove_layers": ["none", "3", "4"]},
    to_model=lambda v: ("alexnet", {
        "towers": v["towers"], "lrn": v["lrn"], "overlapping_pool": v["overlapping_pool"],
        "remove_layers": () if v["remove_layers"] == "none" else (int(v["remove_layers"]),)}),
)

# Fig. 1: a four-layer CIFAR-10 net with ReLUs reaches 25% training error six times sooner
# than the same net with tanh units. The paper's net is cuda-convnet's, not printed: the
# rows are AlexNet's (every conv and hidden FC unit swapped), trained by one recipe.
_STEPS = "steps to 25% train error, x ReLU's"
ALEXNET_RELU_TANH = Study(
    name="alexnet-relu-tanh",
    paper="Krizhevsky et al. 2012, §3.1, Fig. 1: iterations to 25% training error on CIFAR-10, relative to ReLU",
    recipe="alexnet",
    columns=(_STEPS,),
    rows=(
        Row("ReLU (§3.1, the paper's net)", "alexnet", {"activation": "relu"}, {_STEPS: 1.0}),
        Row("tanh (Fig. 1, dashed)", "alexnet", {"activation": "tanh"}, {_STEPS: 6.0}),
    ),
    knobs={"activation": ["relu", "tanh"]},
    to_model=lambda v: ("alexnet", {"activation": v["activation"]}),
)

# §4.1: the PCA colour noise "reduces the top-1 error rate by over 1%": 1.0 is that bound.
ALEXNET_PCA = Study(
    name="alexnet-pca",
    paper="Krizhevsky et al. 2012, §4.1: top-1 error change without the PCA colour noise (over 1%), %",
    recipe="alexnet",
    columns=("Δ top-1 vs paper net",),
    rows=(
        Row("PCA colour noise, std 0.1 (§4.1)", "alexnet", {}, {"Δ top-1 vs paper net": 0.0}, run={"pca_std": 0.1}),
        Row("no colour noise", "alexnet", {}, {"Δ top-1 vs paper net": 1.0}, run={"pca_std": 0.0}),
    ),
    knobs={"pca_std": [0.1, 0.0]},
    to_model=lambda v: ("alexnet", {}, {"pca_std": v["pca_std"]}),
)

_CIFAR_ERR = {3: 8.75, 5: 7.51, 7: 7.17, 9: 6.97, 18: 6.43}  # Table 6, option A


def _cifar_label(n, kind):
    return f"{'plain' if kind == 'plain' else 'ResNet'}-{6 * n + 2}" + (f", shortcut {kind}" if kind != "plain" else "")


RESNET_CIFAR_DEPTH = Study(
    name="resnet-cifar-depth",
    paper="He et al. 2015, §4.2, Table 6 and Fig. 6: CIFAR-10 test error %",
    recipe="resnet_cifar",
    columns=("test error",),
    rows=tuple(
        Row(_cifar_label(n, kind), f"{'plain' if kind == 'plain' else 'resnet'}{6 * n + 2}",
            {} if kind == "plain" else {"shortcut": kind},
            {"test error": _CIFAR_ERR[n]} if kind == "A" else {})
        for n in (3, 5, 7, 9, 18) for kind in ("plain", "A", "B", "C")
    ),
    knobs={"n": [3, 5, 7, 9, 18], "residual": [True, False], "shortcut": ["A", "B", "C"]},
    to_model=lambda v: (f"{'resnet' if v['residual'] else 'plain'}{6 * v['n'] + 2}",
                        {"shortcut": v["shortcut"]} if v["residual"] else {}),
    curves=(("plain", tuple(_cifar_label(n, "plain") for n in (3, 5, 7, 9))),  # Fig. 6 left
            ("resnet", tuple(_cifar_label(n, "A") for n in (3, 5, 7, 9, 18)))),  # Fig. 6 middle
)

# Fig. 6 as pairs: plain-20/32/44/56 against ResNet-20/32/44/56 (option A, as everywhere on
# CIFAR). The paper prints no number for the plain nets (Fig. 6 left shows them as curves:
# deeper is worse, in training error too), so their rows carry none.
RESNET_CIFAR_FIG6 = Study(
    name="resnet-cifar-fig6",
    paper="He et al. 2015, §4.2, Fig. 6 (left, middle) and Table 6: CIFAR-10 test error %, plain vs ResNet",
    recipe="resnet_cifar",
    columns=("test error",),
    rows=tuple(Row(_cifar_label(n, kind), f"{'plain' if kind == 'plain' else 'resnet'}{6 * n + 2}",
                   {} if kind == "plain" else {"shortcut": "A"}, {"test error": _CIFAR_ERR[n]} if kind == "A" else {})
               for n in (3, 5, 7, 9) for kind in ("plain", "A")),  # in pairs: --max-trials 2 is the 20-layer pair
    knobs={"n": [3, 5, 7, 9], "residual": [False, True]},
    to_model=lambda v: (f"{'resnet' if v['residual'] else 'plain'}{6 * v['n'] + 2}",
                        {"shortcut": "A"} if v["residual"] else {}),
    curves=(("plain", tuple(_cifar_label(n, "plain") for n in (3, 5, 7, 9))),
            ("resnet", tuple(_cifar_label(n, "A") for n in (3, 5, 7, 9)))),
)

# §4.1, Table 2 and Fig. 4: 18 and 34 layers, plain and residual; the ResNets use option A
# ("zero-padding for increasing dimensions", so they have no more parameters than the plain nets).
_TABLE2 = {("plain", 18): 27.94, ("plain", 34): 28.54, ("resnet", 18): 27.88, ("resnet", 34): 25.03}
RESNET_TABLE2 = Study(
    name="resnet-table2",
    paper="He et al. 2015, §4.1, Table 2 and Fig. 4: ImageNet val top-1 error % (10-crop), plain vs ResNet (option A)",
    recipe="resnet",
    columns=("val top-1",),
    rows=tuple(Row(f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}", f"{kind}{depth}",
                   {} if kind == "plain" else {"shortcut": "A"}, {"val top-1": _TABLE2[kind, depth]})
               for depth in (18, 34) for kind in ("plain", "resnet")),  # in pairs, as resnet-cifar-fig6
    knobs={"depth": [18, 34], "residual": [False, True]},
    to_model=lambda v: (f"{'resnet' if v['residual'] else 'plain'}{v['depth']}",
                        {"shortcut": "A"} if v["residual"] else {}),
    curves=(("plain", ("plain-18", "plain-34")), ("resnet", ("ResNet-18", "ResNet-34"))),  # Fig. 4 left, right
)

# §4.1, Table 3: ResNet-34 with shortcut options A (zero-padding), B (projections where the
# dimensions grow), C (projections everywhere).
_TABLE3 = {"A": (25.03, 7.76), "B": (24.52, 7.46), "C": (24.19, 7.40)}
RESNET_TABLE3 = Study(
    name="resnet-table3",
    paper="He et al. 2015, §4.1, Table 3: ImageNet val error % (10-crop), ResNet-34 shortcut options",
    recipe="resnet",
    columns=("val top-1", "val top-5"),
    rows=tuple(Row(f"ResNet-34 {kind}", "resnet34", {"shortcut": kind}, {"val top-1": top1, "val top-5": top5})
               for kind, (top1, top5) in _TABLE3.items()),
    knobs={"shortcut": ["A", "B", "C"]},
    to_model=lambda v: ("resnet34", {"shortcut": v["shortcut"]}),
)

# §4.2, Table 6: "For ResNet-110, we run it 5 times and show 'best (mean±std)'": 6.43 (6.61±0.16).
# Five runs that differ in their seed only (a row's Run field); the paper gives no per-run number.
RESNET110_SEEDS = Study(
    name="resnet110-seeds",
    paper="He et al. 2015, §4.2, Table 6: CIFAR-10 test error % of ResNet-110, best of 5 runs (mean ± std)",
    recipe="resnet_cifar",
    columns=("test error",),
    rows=tuple(Row(f"ResNet-110, seed {seed}", "resnet110", {"shortcut": "A"}, {}, run={"seed": seed})
               for seed in range(5)),
    knobs={"seed": list(range(5))},
    to_model=lambda v: ("resnet110", {"shortcut": "A"}, {"seed": v["seed"]}),
    over_seeds={"best": 6.43, "mean": 6.61, "std": 0.16},
)

STUDIES = {s.name: s for s in (ZFNET_TABLE3, ALEXNET_DESIGN, ALEXNET_RELU_TANH, ALEXNET_PCA, RESNET_CIFAR_DEPTH,
                                RESNET_CIFAR_FIG6, RESNET_TABLE2, RESNET_TABLE3, RESNET110_SEEDS)}


def get_study(name):
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}.")
    return STUDIES[name]
