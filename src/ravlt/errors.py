"""Errors every part of the project raises alike."""


class ConfigError(ValueError):
    """A configuration that cannot run, with what to change. ``train.py`` prints it as one line."""
