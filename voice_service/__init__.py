"""The voice service: AI voice agents on the phone (see README.md and docs/)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("voice-service")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
