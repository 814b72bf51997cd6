"""The kzoo modules three user walks load, and the start-up time of each command's --help.

    python benchmarks/import_walks.py          (from a checkout; ~2 minutes on 2 cores)

Walks (issue 13): `kzoo.resnet50(weights="imagenet")` from a converted cache file;
`python -m kzoo.recipes.alexnet --smoke` on the built-in data; `python -m kzoo.evaluate
--protocol dense` on an OverFeat-fast smoke run. Each prints its count and its modules.
"""

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
LOADED = "\nprint('LOADED', ' '.join(sorted(m for m in sys.modules if m.startswith('kzoo'))))"
AS_MAIN = ("import runpy, sys\nsys.argv = {argv!r}\ntry:\n    runpy.run_module({module!r}, run_name='__main__')\n"
           "except SystemExit as exit_:\n    assert not exit_.code, exit_.code")


def _python(code, cwd):
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return done.stdout


def walk(name, code, cwd):
    line = [x for x in _python(code + LOADED, cwd).splitlines() if x.startswith("LOADED")][-1]
    modules = line.split()[1:]
    print(f"{name}: {len(modules)} kzoo modules\n    {' '.join(modules)}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        os.makedirs(os.path.join(cache, "kzoo"))
        ENV["KZOO_CACHE_DIR"] = cache
        _python(f"import kzoo\nkzoo.resnet50().save_weights({cache!r} + '/kzoo/resnet50-imagenet.weights.h5')", tmp)
        walk("kzoo.resnet50(weights='imagenet')", "import sys, kzoo\nkzoo.resnet50(weights='imagenet')", tmp)
        walk("python -m kzoo.recipes.alexnet --smoke",
             "import sys\n" + AS_MAIN.format(argv=["alexnet", "--smoke", "--run-dir", "a"],
                                             module="kzoo.recipes.alexnet"), tmp)
        _python(AS_MAIN.format(argv=["overfeat", "--smoke", "--model", "fast", "--run-dir", "o"],
                               module="kzoo.recipes.overfeat"), tmp)
        walk("python -m kzoo.evaluate --protocol dense",
             "import sys\n" + AS_MAIN.format(argv=["evaluate", "--run-dir", "o", "--protocol", "dense", "--limit",
                                                   "2"], module="kzoo.evaluate"), tmp)
    for command in ("kzoo.recipes.alexnet", "kzoo.evaluate", "kzoo.predict", "kzoo.visualize"):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", command, "--help"], cwd=ROOT, env=ENV, capture_output=True, check=True)
        print(f"python -m {command} --help: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
