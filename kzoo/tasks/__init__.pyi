"""kzoo.tasks: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.tasks import detection as detection
from kzoo.tasks import localization as localization
from kzoo.tasks import transfer as transfer
from kzoo.tasks import voc as voc
