"""kzoo.recipes: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.recipes import ablation as ablation
from kzoo.recipes import alexnet as alexnet
from kzoo.recipes import backbone as backbone
from kzoo.recipes import caltech as caltech
from kzoo.recipes import caltech101 as caltech101
from kzoo.recipes import caltech256 as caltech256
from kzoo.recipes import common as common
from kzoo.recipes import overfeat as overfeat
from kzoo.recipes import resnet as resnet
from kzoo.recipes import resnet_cifar as resnet_cifar
from kzoo.recipes import summary as summary
from kzoo.recipes import voc2012 as voc2012
from kzoo.recipes import zfnet as zfnet
