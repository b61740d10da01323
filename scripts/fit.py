"""Train any algorithm on any supported env: ``python scripts/fit.py --config conf/<experiment>.yaml``."""

import sys

from mbrl_lightning.cli import main

if __name__ == "__main__":
    sys.exit(main())
