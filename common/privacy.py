"""The suppression list of the right to erasure, honoured by every run before anything else.

``churn forget CUSTOMER_ID...`` (:mod:`serving.forget`) adds customers to ``<data_dir>/privacy/suppressed.txt``.
The list holds hashes, not the identifiers (blake2b of the customer_id, 16 bytes), so it is itself no copy of the
data. Ingestion drops suppressed customers' rows from every table right after reading the source, before
validation or quarantine: their rows never reach the validated tables, features, models or lists again, even
though the company's source still has them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from common.files import replace_all

SUPPRESSION_FILE = Path("privacy") / "suppressed.txt"


def id_hash(customer_id) -> str:
    return hashlib.blake2b(str(customer_id).strip().encode(), digest_size=16, person=b"churn-forget").hexdigest()


def suppression_path(data_dir: Path) -> Path:
    return Path(data_dir) / SUPPRESSION_FILE


def load_suppressed(data_dir: Path) -> set[str]:
    path = suppression_path(data_dir)
    return set(path.read_text().split()) if path.exists() else set()


def suppressed_mask(customer_ids: pd.Series, hashes: set[str]) -> pd.Series:
    """True where the customer is on the suppression list (each distinct id is hashed once, not each row)."""
    if not hashes:
        return pd.Series(False, index=customer_ids.index)
    forgotten = [c for c in customer_ids.dropna().unique() if id_hash(c) in hashes]
    return customer_ids.isin(forgotten)


def add_suppressed(data_dir: Path, customer_ids: list[str]) -> int:
    """Add customers to the suppression list (atomically); returns its new size."""
    hashes = load_suppressed(data_dir) | {id_hash(c) for c in customer_ids}
    replace_all({}, {suppression_path(data_dir): ("\n".join(sorted(hashes)) + "\n").encode()})
    return len(hashes)
