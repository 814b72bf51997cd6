import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As `import kzoo` does (kzoo/__init__.py), before a test module imports TensorFlow first.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# oneDNN's default CPU allocator pools every large tensor for the life of the process: one
# full-size OverFeat run kept 2.4 GB. The system allocator gives memory back; same numbers.
os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")

# Hermetic: the suite's caches (the built-in data's statistics, converted weights) start empty
# in a folder of its own, never the user's ~/.keras.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["KZOO_CACHE_DIR"] = tempfile.mkdtemp(prefix="kzoo-tests-cache-")
atexit.register(shutil.rmtree, os.environ["KZOO_CACHE_DIR"], ignore_errors=True)

import ctypes  # noqa: E402
import gc  # noqa: E402

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-large", action="store_true", default=False,
                     help="also run the tests marked `large` (long learning runs; CI runs them)")


def pytest_collection_modifyitems(config, items):
    """The default tier leaves the `large` tests out (keras-hub's tiers); `--run-large` adds
    them, and `--run-large -m large` runs them alone."""
    if config.getoption("--run-large"):
        return
    skip = pytest.mark.skip(reason="a large test: run with --run-large")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)


def _rss_mb():
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


_RSS_AFTER_GC = [_rss_mb()]

try:  # glibc keeps freed heap pages (in every thread's arena) until asked to give them back
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


@pytest.fixture(autouse=True)
def _free_dropped_models():
    """Keras models are reference cycles, freed only by the cyclic GC, which seldom runs: the
    full-size models of earlier tests piled up (7 GB in test_evaluate alone). Collect once
    the process has grown by 250 MB since the last collection (a collection costs ~0.2 s;
    two test processes share the machine)."""
    yield
    if _rss_mb() - _RSS_AFTER_GC[0] > 250:
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
        _RSS_AFTER_GC[0] = _rss_mb()


@pytest.fixture(scope="session")
def built():
    """Each registered model at its paper's input size, built once per session, shape-only
    (counts, sizes, multiply-adds, layer order; tests of initial values build their own)."""
    import kzoo
    from kzoo.models.common import shape_only

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = shape_only(kzoo.create_model, name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def symbolic():
    """kzoo.models.common.shape_only, for tests that build a model with options to read its structure."""
    from kzoo.models.common import shape_only

    return shape_only


@pytest.fixture
def shapes_folder():
    """Writes generated shapes as PNGs in class folders and a box CSV for the first
    `with_box` of them; returns {file stem: box}."""

    def write(root, csv_path, n=24, size=48, with_box=None):
        import tensorflow as tf

        from kzoo.data.boxes import SHAPE_COLOURS, generated_shapes

        images, boxes, labels = generated_shapes(n, size, seed=3)
        rows, truth = [], {}
        for i, (image, box, label) in enumerate(zip(images, boxes, labels)):
            folder = root / SHAPE_COLOURS[label]
            folder.mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(folder / f"img{i}.png"), tf.io.encode_png(image))
            if with_box is None or i < with_box:
                rows.append(f"img{i}.png," + ",".join(str(v) for v in box))
                truth[f"img{i}"] = box
        csv_path.write_text("image,x1,y1,x2,y2\n" + "\n".join(rows) + "\n")
        return truth

    return write


@pytest.fixture(scope="session")
def jax_env():
    """The environment of a subprocess that runs kzoo under JAX on the CPU. XLA's backend
    optimizations off: they compile each small eager op ~2x slower and change no result
    these tests read (a 56 s test took 39)."""
    flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_backend_optimization_level=0"]))
    return {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


def _tree_digest(root):
    import hashlib
    import pathlib

    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(root).rglob("*")):
        if path.is_file() and path.name != ".lock":
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished run of a recipe's command line, trained once per session and shared:
    `trained_run("resnet_cifar", "--smoke")` -> (run directory, what the command printed).
    Read-only: a test that resumes or edits a run works on `copied_run(run, tmp_path)`; the
    session fails if a test changed a shared run."""
    import contextlib
    import importlib
    import io

    from kzoo.recipes.common import main

    runs = {}

    def get(recipe, *argv):
        if (recipe, argv) not in runs:
            path = tmp_path_factory.mktemp(recipe) / "run"
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = main(importlib.import_module(f"kzoo.recipes.{recipe}").RECIPE, [*argv, "--run-dir", str(path)])
            assert code == 0, printed.getvalue()[-3000:]
            runs[recipe, argv] = (path, printed.getvalue(), _tree_digest(path))
        return runs[recipe, argv][:2]

    yield get
    changed = [key for key, (path, _, digest) in runs.items() if _tree_digest(path) != digest]
    assert not changed, f"tests changed the shared runs {changed}: copy a run (copied_run) before writing into it"


@pytest.fixture(scope="session")
def copied_run():
    """copied_run(run_dir, tmp_path) -> a private copy of a shared run, to resume or edit."""
    def copy(run_dir, tmp_path, name="copy"):
        target = tmp_path / name
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(".lock"))
        return target

    return copy


@pytest.fixture(scope="session")
def worker_runs(tmp_path_factory):
    """tests/train_worker.py's small run on one device and under MirroredStrategy over two
    logical CPUs, both started in the background at the first request; `worker_runs(strategy)`
    waits for one -> (its npz of weights, its run directory)."""
    import subprocess
    import sys

    import numpy as np

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = tmp_path_factory.mktemp("workers")
    procs = {}
    for strategy, extra in (("default", []), ("mirrored", ["2"])):
        command = [sys.executable, os.path.join(root, "tests", "train_worker.py"), str(folder / f"{strategy}.npz"),
                   str(folder / strategy), strategy, *extra]
        procs[strategy] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)
    done = {}

    def get(strategy):
        if strategy not in done:
            out = procs[strategy].communicate(timeout=600)[0]
            assert procs[strategy].returncode == 0, out[-3000:]
            done[strategy] = (np.load(folder / f"{strategy}.npz"), folder / strategy)
        return done[strategy]

    yield get
    for proc in procs.values():
        proc.kill()
        proc.wait()
