"""Files shipped inside the package (``configs/``), found through :mod:`importlib.resources`."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The path of the shipped file ``configs/<name>``, in a checkout (editable install) or an installed wheel."""
    return Path(files("configs").joinpath(name))
