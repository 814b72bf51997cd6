"""The import graph (issue 13): every kzoo module imports what it needs at its top; a
function imports only an optional dependency; a builder loads only its own paper."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Installed only for some uses (extras, or another Keras backend without TensorFlow).
OPTIONAL = {"tensorflow", "tensorflow_datasets", "sklearn", "matplotlib", "keras_tuner", "torch", "jax"}
# Loaded by `python -m kzoo.predict --help`, which must not load Keras: TrainedModel.export imports it;
# `python -m kzoo.data.overlap --help` neither: its progress bar imports it.
KERAS_IN_FUNCTIONS = {"kzoo/inference.py", "kzoo/data/overlap.py"}


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


def test_a_builder_loads_only_its_own_paper():
    code = ("import sys, kzoo\n"
            "def loaded(): print(' '.join(sorted(m for m in sys.modules if m.startswith('kzoo'))))\n"
            "kzoo.resnet20(input_shape=(32, 32, 3)); loaded()\n"
            "kzoo.resnet20(weights='digits'); loaded()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    layers = ["kzoo.layers"] + [f"kzoo.layers.{m}" for m in
                                ("constraints", "grouped_conv", "lrn", "offset_pooling", "padding")]
    built = ["kzoo", "kzoo.registry", "kzoo.utils", *layers, "kzoo.models", "kzoo.models.common",
             "kzoo.models.resnet"]
    random, trained = done.stdout.splitlines()
    assert random.split() == sorted(built)
    assert trained.split() == sorted([*built, "kzoo.utils.files", "kzoo.weights", "kzoo.weights.record"])


def test_importing_kzoo_layers_is_enough_to_load_a_keras_file(tmp_path):
    import kzoo

    path = str(tmp_path / "alexnet.keras")
    kzoo.alexnet(input_shape=(67, 67, 3), classes=3).save(path)  # TowerConv2D, LRN, CeilPadding2D
    code = f"import keras, kzoo.layers\nprint(keras.saving.load_model({path!r}).count_params())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == kzoo.alexnet(input_shape=(67, 67, 3), classes=3).count_params()


def test_list_models_keeps_the_papers_order_whichever_builder_came_first():
    code = ("import kzoo\nkzoo.resnet56(input_shape=(32, 32, 3))\nprint(' '.join(kzoo.list_models()))\n"
            "print(' '.join(kzoo.list_models(paper='overfeat')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    names, overfeat = done.stdout.splitlines()
    assert names.split()[:6] == ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "plain18"]
    assert names.split()[-3:] == ["resnet110", "plain110", "resnet1202"] and len(names.split()) == 22
    assert overfeat.split() == ["overfeat_fast", "overfeat_accurate"]
