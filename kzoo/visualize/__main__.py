import sys

from kzoo.visualize.run import main

sys.exit(main())
