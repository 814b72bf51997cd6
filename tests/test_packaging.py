"""`pip install .` (a wheel, not the source tree) gives a working kzoo with kzoo.recipes."""

import pathlib
import subprocess
import sys
import zipfile


ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs_a_recipe(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), "-q"],
        check=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("kzoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("kzoo/__init__.py", "kzoo/recipes/__init__.py", "kzoo/recipes/summary.py",
                   "kzoo/layers/lrn.py", "kzoo/models/resnet.py", "kzoo/utils/report.py",
                   "kzoo/weights/manifest.json", "kzoo/weights/files/resnet20-digits.weights.h5",
                   "kzoo/weights/files/resnet20-digits-mean.npy"):
        assert module in names
    assert not [n for n in names if n.startswith("tests/")]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, timeout=300)
    # Run from an empty folder so that the source tree cannot be imported by accident; side by side.
    site = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    commands = {
        "summary": ([sys.executable, "-m", "kzoo.recipes.summary", "resnet20"], site),
        # the registry and kzoo's own weights come with the wheel
        "shipped": ([sys.executable, "-c", "import kzoo; m = kzoo.resnet20(weights='digits'); "
                     "print(m.count_params())"], site),
        "recipes": ([sys.executable, "-c", "import kzoo.recipes; print(kzoo.recipes.__file__)"],
                    {"PYTHONPATH": str(target)}),
    }
    procs = {key: subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for key, (command, env) in commands.items()}
    done = {key: (proc.communicate(timeout=300), proc.returncode) for key, proc in procs.items()}
    (out, err), code = done["summary"]
    assert code == 0, err[-2000:]
    assert "| trainable parameters | 269,722 | 269,722 | yes |" in out
    (out, err), code = done["shipped"]
    assert code == 0 and "271098" in out, err[-2000:]
    assert str(target) in done["recipes"][0][0]
