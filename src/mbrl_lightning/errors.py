"""Errors the command line reports as one line instead of a traceback."""


class ConfigurationError(ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""
