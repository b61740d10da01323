"""Run configs x seeds (x overrides) with a concurrency limit: ``python scripts/sweep.py --configs conf/a.yaml --seeds 0 1 2``."""

import sys

from mbrl_lightning.tuning.sweep import main

if __name__ == "__main__":
    sys.exit(main())
