"""kzoo.layers, kzoo.models, the registry and the MAC counter need Keras only, not TensorFlow."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError
import numpy as np
import keras
import kzoo
from kzoo.utils import count_macs
from kzoo.registry import get_entry

out = {"backend": keras.backend.backend()}
for name in ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "resnet20", "plain20"]:
    size = max(get_entry(name).min_size, 32)
    model = kzoo.create_model(name, input_shape=(size, size, 3), classes=10)
    y = model(np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32"))
    out[name] = [list(y.shape), float(np.sum(np.asarray(y))), count_macs(model)]
out["params"] = kzoo.alexnet().count_params()
out["tf_imported"] = any(m == "tensorflow" or m.startswith("tensorflow.") for m, v in sys.modules.items() if v)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_models_build_and_run_under_jax_without_tensorflow(jax_env):
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=jax_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["backend"] == "jax"
    assert result["tf_imported"] is False
    for name in ["alexnet", "zfnet", "overfeat_fast", "overfeat_accurate", "resnet18", "resnet20", "plain20"]:
        shape, total, macs = result[name]
        assert shape == [2, 10] and total == pytest.approx(2.0, rel=1e-4) and macs > 0
    assert result["params"] == 60_965_224


def test_blocking_tensorflow_really_blocks_it():
    # Guards the test above: the blocker must make `import tensorflow` fail.
    code = 'import sys; sys.modules["tensorflow"] = None\ntry:\n import tensorflow\nexcept ImportError:\n print("blocked")'
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "blocked"
