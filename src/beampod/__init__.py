"""beampod: a whole Bluesky instrument pod, one command, no containers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("beampod")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
