"""kzoo.models: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.models import alexnet as alexnet
from kzoo.models import common as common
from kzoo.models import convnet as convnet
from kzoo.models import features as features
from kzoo.models import overfeat as overfeat
from kzoo.models import resnet as resnet
from kzoo.models import zfnet as zfnet
