"""kzoo.tune: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.tune import search as search
from kzoo.tune import studies as studies
