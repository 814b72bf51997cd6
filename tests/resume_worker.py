"""Run by test_resume.py in subprocesses: the AlexNet recipe's command line on a reduced
AlexNet (dropout in fc6/fc7 as in the paper, narrow layers so that a checkpoint is small).

    python tests/resume_worker.py [recipe flags...]
"""

import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kzoo.recipes import alexnet  # noqa: E402
from kzoo.recipes.common import main  # noqa: E402

REDUCED = {"init": "caffe", "fc_units": 64, "conv_maps": [32, 32, 32]}

if __name__ == "__main__":
    sys.exit(main(dataclasses.replace(alexnet.RECIPE, demo_options=REDUCED), sys.argv[1:]))
