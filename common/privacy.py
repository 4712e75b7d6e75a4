"""The suppression list of the right to erasure, honoured by every run before anything else.

``churn forget CUSTOMER_ID...`` (:mod:`serving.forget`) adds customers to ``<data_dir>/privacy/suppressed.txt``.
The list holds hashes, not the identifiers (blake2b of the customer_id, 16 bytes), so it is itself no copy of the
data. Ingestion drops suppressed customers' rows from every table right after reading the source, before
validation or quarantine: their rows never reach the validated tables, features, models or lists again, even
though the company's source still has them.

Ids are compared in the text form validation gives them (:func:`id_text`), whatever the source's type: forgetting
``"7"`` suppresses ``7`` (an integer column), ``7.0`` (a float column of whole numbers, as a column with gaps is
read), ``"7"`` and ``" 7 "``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from common.files import replace_all

SUPPRESSION_FILE = Path("privacy") / "suppressed.txt"


def id_hash(customer_id) -> str:
    """blake2b (16 bytes) of the id's stripped text: what the suppression list and the forget plan hold."""
    return hashlib.blake2b(str(customer_id).strip().encode(), digest_size=16, person=b"churn-forget").hexdigest()


def id_text(customer_ids: pd.Series) -> pd.Series:
    """Ids as validation types them (``features.ingest``): stripped text, a float column of whole numbers without
    its trailing ``.0``; missing or empty values are missing."""
    series = customer_ids
    if pd.api.types.is_float_dtype(series) and series.dropna().mod(1).eq(0).all():
        series = series.astype("Int64")  # ids read as floats (a column with gaps) keep no trailing '.0'
    text = series.astype("str").str.strip()
    return text.where(series.notna() & text.ne(""))


def forgotten_ids(customer_ids: pd.Series, hashes: set[str]) -> set[str]:
    """The ids (in :func:`id_text` form) of ``customer_ids`` whose hash is in ``hashes``."""
    return set(_forgotten(customer_ids, hashes).values())


def suppressed_mask(customer_ids: pd.Series, hashes: set[str]) -> pd.Series:
    """True where the customer is on the suppression list (ids compared as :func:`id_text`)."""
    matched = _forgotten(customer_ids, hashes)
    if not matched:
        return pd.Series(False, index=customer_ids.index)
    return customer_ids.isin(list(matched)).fillna(False).astype(bool)


def _forgotten(customer_ids: pd.Series, hashes: set[str]) -> dict:
    """Value as stored -> id text, for the distinct values whose id is in ``hashes``: each distinct value is typed
    and hashed once, not each row (whether a float column holds whole numbers only, its distinct values tell)."""
    if not hashes:
        return {}
    distinct = pd.Series(customer_ids.dropna().unique(), dtype=customer_ids.dtype)
    return {value: text for value, text in zip(distinct, id_text(distinct))
            if isinstance(text, str) and id_hash(text) in hashes}


def suppression_path(data_dir: Path) -> Path:
    return Path(data_dir) / SUPPRESSION_FILE


def load_suppressed(data_dir: Path) -> set[str]:
    path = suppression_path(data_dir)
    return set(path.read_text().split()) if path.exists() else set()


def add_suppressed_hashes(data_dir: Path, hashes: Iterable[str]) -> int:
    """Add id hashes (:func:`id_hash`) to the suppression list (atomically); returns its new size."""
    before = load_suppressed(data_dir)
    merged = before | set(hashes)
    if merged != before or not suppression_path(data_dir).exists():
        replace_all({}, {suppression_path(data_dir): ("\n".join(sorted(merged)) + "\n").encode()})
    return len(merged)


def add_suppressed(data_dir: Path, customer_ids: list[str]) -> int:
    """Add customers to the suppression list (atomically); returns its new size."""
    return add_suppressed_hashes(data_dir, {id_hash(c) for c in customer_ids})
