"""Errors meant for the person running the pipeline: one clear line that says what is wrong and what to do."""


class ChurnError(Exception):
    """A problem with the user's data or configuration; the CLI prints it without a traceback."""


class ConfigError(ChurnError):
    """The configuration file is missing, malformed, or has unknown keys or wrong types."""


class DataError(ChurnError):
    """A data source cannot be read or breaks the data contract."""
