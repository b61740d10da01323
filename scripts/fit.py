"""Train any algorithm on any supported env: ``python scripts/fit.py --config conf/<experiment>.yaml``."""

import sys

try:
    from mbrl_lightning.cli import main
except KeyboardInterrupt:  # Ctrl-C during the imports (several seconds on a busy machine)
    print("\ninterrupted while starting; nothing was trained or saved", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
