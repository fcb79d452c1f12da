"""``python -m beampod.sim FAMILY --prefix PREFIX``: serve one simulated IOC."""

import sys

from beampod.sim._iocs import main

if __name__ == "__main__":
    sys.exit(main())
