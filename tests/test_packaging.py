"""`pip install .` (a wheel, not the source tree) gives a working kzoo with kzoo.recipes."""

import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
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
    # Run from an empty folder so that the source tree cannot be imported by accident.
    run = subprocess.run(
        [sys.executable, "-m", "kzoo.recipes.summary", "resnet20"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| trainable parameters | 269,722 | 269,722 | yes |" in run.stdout
    shipped = subprocess.run(  # the registry and kzoo's own weights come with the wheel
        [sys.executable, "-c", "import kzoo; m = kzoo.resnet20(weights='digits'); print(m.count_params())"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=300,
    )
    assert shipped.returncode == 0 and "271098" in shipped.stdout, shipped.stderr[-2000:]
    assert str(target) in subprocess.run(
        [sys.executable, "-c", "import kzoo.recipes; print(kzoo.recipes.__file__)"],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=120,
    ).stdout
