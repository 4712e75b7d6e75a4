"""What each cached or identified step depends on, hashed: data fingerprints, code versions, the snapshot, training
and scoring keys. The flows skip a step whose key is unchanged; the scoring run id names a list's inputs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from common.config import PipelineConfig
from common.errors import DataError


def _digest(value) -> str:
    import hashlib

    return hashlib.blake2b(json.dumps(value, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def source_version(*packages: str) -> str:
    """Hash of every Python file of ``packages`` (changes whenever the code that produces an output can)."""
    import hashlib
    import importlib

    h = hashlib.blake2b(digest_size=8)
    for package in packages:
        root = Path(importlib.import_module(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def data_fingerprint(cfg: PipelineConfig, last_day: dt.date | None) -> dict:
    """Validated source files (name, size, hash), row counts, date range and one combined hash."""
    import hashlib

    import pyarrow.parquet as pq

    from features.snapshots import fingerprint, source_files

    files = source_files(cfg.validated_dir)
    if not files:
        raise DataError(f"no validated tables in {cfg.validated_dir}; run `churn validate` first")
    sources = [{**fingerprint(p), "rows": pq.ParquetFile(p).metadata.num_rows} for p in files]
    combined = hashlib.blake2b("".join(s["blake2b"] for s in sources).encode(), digest_size=16).hexdigest()
    return {"sources": sources, "last_day": last_day.isoformat() if last_day else None, "hash": combined}


def folder_inputs_key(folder: Path) -> str | None:
    """The :func:`snapshot_key` a snapshot folder was built for (None when absent or unknown)."""
    meta = Path(folder) / "metadata.json"
    return json.loads(meta.read_text()).get("inputs_key") if meta.exists() else None


def snapshot_key(cfg: PipelineConfig, cutoffs: list[dt.date], with_labels: bool) -> str:
    """What a snapshot depends on, hashed: the validated sources, the feature definitions' code version, the
    horizons, the cutoffs."""
    from features.snapshots import code_version

    fingerprint = data_fingerprint(cfg, None)
    return _digest({"data": fingerprint["hash"], "code": code_version(),
                    "horizons": cfg.horizons.model_dump(), "cutoffs": cutoffs, "with_labels": with_labels,
                    **_engine(cfg, with_labels)})


def _engine(cfg: PipelineConfig, with_labels: bool = True) -> dict:
    """The engine, for the keys of what it builds (so that `--engine spark` builds on Spark, not from a cache of
    DuckDB's), with the training sample that shapes a Spark stack."""
    if cfg.engine == "duckdb":
        return {}  # as before there was a choice: a DuckDB run keeps its caches
    sample = cfg.spark.training_sample_customers if with_labels else None
    return {"engine": cfg.engine, "sample": sample}


def training_key(cfg: PipelineConfig) -> str:
    """What the trained models depend on, hashed: data, feature and model code, and the settings that shape them."""
    return _digest({"data": data_fingerprint(cfg, None)["hash"], "code": source_version("common", "features", "models"),
                    "horizons": cfg.horizons.model_dump(), "snapshots": cfg.snapshots.model_dump(),
                    "models": cfg.models.model_dump(), **_engine(cfg)})


def scoring_run_id(snapshot_fingerprint: str, champions: dict, cfg: PipelineConfig, reasons_file: Path,
                   playbooks_file: Path) -> str:
    """A run id derived from every input that changes a list: the snapshot (data and feature code), the champion
    versions, the scoring, targeting (tiers, budgets, control share, consent) and output settings, the reason
    texts, the playbooks, the contacts joined at publish time and the code that scores, explains and targets. The
    same inputs give the same id, so an unchanged re-run publishes byte-identical lists."""
    contacts = cfg.validated_dir / "customer_contacts.parquet"
    return _digest({"snapshot": snapshot_fingerprint, "scoring": cfg.scoring.model_dump(),
                    "contacts": _file_digest(contacts) if cfg.outputs.include_contact and contacts.exists() else None,
                    "horizons": cfg.horizons.model_dump(), "currency": cfg.base_currency,
                    "targeting": cfg.targeting.model_dump(),
                    "outputs": cfg.outputs.model_dump(exclude={"sql_lock_timeout_seconds"}),
                    "reasons": _digest(Path(reasons_file).read_text(encoding="utf-8")),
                    "playbooks": _digest(Path(playbooks_file).read_text(encoding="utf-8")),
                    "code": source_version("common", "models", "serving"),
                    "champions": {n: c.version for n, c in sorted(champions.items())}})[:16]


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
