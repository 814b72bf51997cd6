"""The import graph (issue 13): every kzoo module imports what it needs at its top; a
function imports only an optional dependency; a builder loads only its own paper."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Installed only for some uses (extras, or another Keras backend without TensorFlow).
OPTIONAL = {"tensorflow", "tensorflow_datasets", "sklearn", "matplotlib", "keras_tuner", "torch", "jax"}
# Loaded by `python -m kzoo.predict --help`, which must not load Keras: TrainedModel.export imports it.
KERAS_IN_FUNCTIONS = {"kzoo/inference.py"}


def _function_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found.update((sub.lineno, alias.name) for alias in sub.names)
                elif isinstance(sub, ast.ImportFrom):
                    found.add((sub.lineno, "." * sub.level + (sub.module or "")))
    return found


def test_functions_import_only_optional_dependencies():
    offending = []
    for path in sorted((ROOT / "kzoo").rglob("*.py")):
        where = str(path.relative_to(ROOT))
        allowed = OPTIONAL | ({"keras"} if where in KERAS_IN_FUNCTIONS else set())
        offending += [f"{where}:{line} imports {name}" for line, name in sorted(_function_imports(path))
                      if name.split(".")[0] not in allowed]
    assert offending == []


def test_the_rule_sees_a_function_local_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from kzoo import registry\n    import numpy as np\n")
    assert _function_imports(path) == {(4, "kzoo"), (5, "numpy")}


BUILDER_WALK = ("import sys, kzoo\n"
                "def loaded(): print(' '.join(sorted(m for m in sys.modules if m.startswith('kzoo'))))\n"
                "kzoo.resnet20(input_shape=(32, 32, 3)); loaded()\n"
                "kzoo.resnet20(weights='digits'); loaded()\n")
LIST_ORDER = ("import kzoo\nkzoo.resnet56(input_shape=(32, 32, 3))\nprint(' '.join(kzoo.list_models()))\n"
              "print(' '.join(kzoo.list_models(paper='overfeat')))")


@pytest.fixture(scope="module")
def fresh_processes(tmp_path_factory):
    """The module's fresh Python processes, started side by side (each pays TensorFlow's
    import on its own); `fresh_processes(name)` waits for one -> (returncode, stdout, stderr)."""
    import kzoo

    path = str(tmp_path_factory.mktemp("keras") / "alexnet.keras")
    kzoo.alexnet(input_shape=(67, 67, 3), classes=3).save(path)  # TowerConv2D, LRN, CeilPadding2D
    codes = {"builder": BUILDER_WALK, "order": LIST_ORDER,
             "keras_file": f"import keras, kzoo.layers\nprint(keras.saving.load_model({path!r}).count_params())"}
    procs = {name: subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
             for name, code in codes.items()}
    results = {}

    def wait(name):
        if name not in results:
            out, err = procs[name].communicate(timeout=300)
            results[name] = (procs[name].returncode, out, err)
        return results[name]

    yield wait
    for proc in procs.values():
        proc.kill()
        proc.wait()


def test_a_builder_loads_only_its_own_paper(fresh_processes):
    code, out, err = fresh_processes("builder")
    assert code == 0, err
    # kzoo.layers registers every layer for .keras files, CenterView (issue 29: the model's preprocessing) too;
    # the builders' dtype= is checked against kzoo.utils.precision (issue 30)
    layers = ["kzoo.layers"] + [f"kzoo.layers.{m}" for m in ("batch_norm", "center_view", "constraints",
                                                             "grouped_conv", "lrn", "offset_pooling", "padding")]
    built = ["kzoo", "kzoo.registry", "kzoo.utils", "kzoo.utils.precision", "kzoo.utils.values", *layers,
             "kzoo.models",
             "kzoo.models.common", "kzoo.models.resnet"]
    random, trained = out.splitlines()
    assert random.split() == sorted(built)
    assert trained.split() == sorted([*built, "kzoo.utils.files", "kzoo.weights", "kzoo.weights.record"])


def test_importing_kzoo_layers_is_enough_to_load_a_keras_file(fresh_processes):
    import kzoo

    code, out, err = fresh_processes("keras_file")
    assert code == 0, err[-2000:]
    assert int(out.split()[-1]) == kzoo.alexnet(input_shape=(67, 67, 3), classes=3).count_params()


def test_list_models_keeps_the_papers_order_whichever_builder_came_first(fresh_processes):
    code, out, err = fresh_processes("order")
    assert code == 0, err[-2000:]
    names, overfeat = out.splitlines()
    assert names.split()[:6] == ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "plain18"]
    assert names.split()[-3:] == ["resnet110", "plain110", "resnet1202"] and len(names.split()) == 22
    assert overfeat.split() == ["overfeat_fast", "overfeat_accurate"]


def test_no_function_is_over_60_lines():
    """Issue 29's rule: a function that does one thing fits on a screen (docstring included)."""
    long = []
    for path in sorted((ROOT / "kzoo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert long == []


def _private_uses(path):
    """`from kzoo... import _name`, and `module._name` or `kzoo...._name` for a kzoo module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = lambda name: name.startswith("_") and not name.startswith("__")  # noqa: E731
    modules, found = {"kzoo"}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kzoo"):
            modules.update(alias.asname or alias.name for alias in node.names)
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if private(a.name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_name_is_used_across_modules(tmp_path):
    offending = [f"{path.relative_to(ROOT)}:{use}" for path in sorted((ROOT / "kzoo").rglob("*.py"))
                 for use in _private_uses(path)]
    assert offending == []
    sample = tmp_path / "m.py"  # the rule sees both forms
    sample.write_text("from kzoo.data import sources\nfrom kzoo.evaluate.fcn import _x\nsources._op_message(1)\n")
    assert _private_uses(sample) == ["2: from kzoo.evaluate.fcn import _x", "3: sources._op_message"]


def _stub_names(path):
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return names


def test_each_lazy_package_has_a_stub_naming_exactly_what_it_holds():
    import importlib
    import pkgutil

    lazy = [p for p in sorted((ROOT / "kzoo").rglob("__init__.py")) if "lazy_exports(" in p.read_text()]
    assert len(lazy) >= 10  # kzoo, data, evaluate, models, recipes, tasks, train, tune, utils, visualize, weights
    for init in lazy:
        package = ".".join(init.parent.relative_to(ROOT).parts)
        module = importlib.import_module(package)
        held = {m.name for m in pkgutil.iter_modules(module.__path__) if not m.name.startswith("_")}
        held |= set(getattr(module, "_EXPORTS", {}))
        held |= {name for name, value in vars(module).items() if not name.startswith("_")
                 and getattr(value, "__module__", None) == package}
        held |= {name for name in ("__version__",) if name in vars(module)}
        stub = init.with_suffix(".pyi")
        assert stub.is_file(), f"{stub} is missing: run python dev/stubs.py"
        declared = _stub_names(stub)
        assert declared >= held, f"{stub} lacks {sorted(held - declared)}: run python dev/stubs.py"
        assert not declared - held - {"MANIFEST", "FIELDS"}, f"{stub} names {sorted(declared - held)}, gone"


def _kzoo_edges():
    """{module: modules it imports or names as kzoo.a.b attributes}, over every kzoo module."""
    modules = {".".join(p.with_suffix("").relative_to(ROOT).parts).removesuffix(".__init__"): p
               for p in (ROOT / "kzoo").rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        tree, found = ast.parse(path.read_text(encoding="utf-8")), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kzoo"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("kzoo.")}
            elif isinstance(node, ast.Attribute):  # kzoo.data.sources.load_source, as lazy loading resolves it
                parts, value = [node.attr], node.value
                while isinstance(value, ast.Attribute):
                    parts, value = [value.attr, *parts], value.value
                if isinstance(value, ast.Name) and value.id == "kzoo":
                    dotted = "kzoo." + ".".join(parts)
                    while dotted not in modules and "." in dotted:
                        dotted = dotted.rsplit(".", 1)[0]
                    found.add(dotted)
        edges[name] = {m for m in found if m in modules and m != name and m != "kzoo"
                       and not name.startswith(m + ".")}  # a module's own package is its face
    return edges


def test_no_import_cycle_among_kzoo_modules_counting_lazy_references():
    edges = _kzoo_edges()
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_lazy_reference(tmp_path, monkeypatch):
    package = tmp_path / "kzoo"
    package.mkdir()
    (package / "a.py").write_text("import kzoo\n\ndef f():\n    return kzoo.b.g()\n")
    (package / "b.py").write_text("from kzoo import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _kzoo_edges() == {"kzoo.a": {"kzoo.b"}, "kzoo.b": {"kzoo.a"}}
