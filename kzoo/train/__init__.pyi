"""kzoo.train: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.train import checkpoints as checkpoints
from kzoo.train import engine as engine
from kzoo.train import rundir as rundir
from kzoo.train import runlog as runlog
from kzoo.train import schedules as schedules
from kzoo.train import strategies as strategies
