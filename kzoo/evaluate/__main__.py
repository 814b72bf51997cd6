import sys

from kzoo.evaluate.run import main

sys.exit(main())
