"""Tune a config's keys with Optuna: ``python scripts/tune.py --config conf/<experiment>.yaml``."""

import sys

from mbrl_lightning.tuning.command import main

if __name__ == "__main__":
    sys.exit(main())
