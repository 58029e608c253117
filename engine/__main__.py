"""`python -m engine`: the TrainLens command line (see engine/cli/)."""

import sys

from engine.cli import main

sys.exit(main())
