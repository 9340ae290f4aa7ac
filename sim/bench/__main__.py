"""``python -m sim.bench [NAME ...]`` (``make bench``)."""

import sys

from sim.bench import main

sys.exit(main())
