"""One exceptions module with one root class (as gpiozero's exc.py).

Every error the appliance raises on purpose derives from :class:`ApplianceError`, so callers can
tell our errors (bad input, bad configuration, a device gone away) from bugs.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Root of every error pi-appliance raises deliberately."""


class ConfigError(ApplianceError):
    """A configuration problem; names the file and the key."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


class OutputError(ApplianceError):
    """The buzzer output failed (pigpiod went away, a limit was hit, the board cannot do it)."""


class StateError(ApplianceError):
    """A state file could not be read or written."""
