"""kzoo.visualize: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.visualize import analysis as analysis
from kzoo.visualize import common as common
from kzoo.visualize import correspondence as correspondence
from kzoo.visualize import curves as curves
from kzoo.visualize import deconv as deconv
from kzoo.visualize import invariance as invariance
from kzoo.visualize import occlusion as occlusion
from kzoo.visualize import predictions as predictions
from kzoo.visualize import run as run
from kzoo.visualize import top9 as top9
