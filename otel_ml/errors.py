"""Errors that several components raise and the command line reports (standard library only)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is invalid; the message names its key."""
