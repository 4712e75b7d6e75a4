"""Errors meant for the person running the pipeline: one clear line that says what is wrong and what to do."""


class ChurnError(Exception):
    """A problem with the user's data or configuration; the CLI prints it without a traceback."""


class ConfigError(ChurnError):
    """The configuration file is missing, malformed, or has unknown keys or wrong types."""


class DataError(ChurnError):
    """A data source cannot be read or breaks the data contract."""


def shown_url(url: str, unreadable: str = "<url>") -> str:
    """A SQLAlchemy URL as a message may show it: the password hidden (``unreadable`` when it does not parse)."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a message
        return unreadable
