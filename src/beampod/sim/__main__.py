"""``python -m beampod.sim FAMILY --prefix PREFIX``: serve one simulated IOC."""

import sys

from beampod._lazy import skip_imports, without_pydantic_plugins
from beampod.sim._names import NUMPY_FREE_FAMILIES, families_in_argv

if __name__ == "__main__":
    without_pydantic_plugins()
    families = families_in_argv(sys.argv[1:])
    if families and NUMPY_FREE_FAMILIES.issuperset(families):
        # Before caproto is imported: it picks its numpy backend if numpy imports.
        skip_imports(["numpy"])
    from beampod.sim._iocs import main

    sys.exit(main())
