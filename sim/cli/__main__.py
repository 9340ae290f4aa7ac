"""``python -m sim.cli ...``: the ``foldaccel`` console script."""

import sys

from sim.cli import main

sys.exit(main())
