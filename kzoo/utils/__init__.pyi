"""kzoo.utils: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.utils import cli as cli
from kzoo.utils import files as files
from kzoo.utils import flops as flops
from kzoo.utils import graphs as graphs
from kzoo.utils import precision as precision
from kzoo.utils import progress as progress
from kzoo.utils import report as report
from kzoo.utils import values as values
from kzoo.utils.flops import count_macs as count_macs, layer_macs as layer_macs

def lazy_exports(package, exports):
    ...
def quiet_tensorflow(verbose=False, module='tensorflow'):
    ...
