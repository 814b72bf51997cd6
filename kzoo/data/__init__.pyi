"""kzoo.data: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.data import boxes as boxes
from kzoo.data import caltech as caltech
from kzoo.data import images as images
from kzoo.data import labels as labels
from kzoo.data import overlap as overlap
from kzoo.data import prepare as prepare
from kzoo.data import scenes as scenes
from kzoo.data import shards as shards
from kzoo.data import sources as sources
from kzoo.data import stats as stats
from kzoo.data import tfdata as tfdata
from kzoo.data import transforms as transforms
from kzoo.data import voc as voc
