"""The one typed configuration of the pipeline, loaded from ``configs/*.yaml``.

Relative paths in the file are resolved against ``data_dir`` (itself relative to the current directory), so
the same file works from any checkout. Unknown keys and wrong types are errors that name the key and the file.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError
from common.resources import shipped
from common.yamlio import validation_problems

DEFAULT_CONFIG = shipped("default.yaml")
CONFIG_ENV = "CHURN_CONFIG"


def _iana_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as 'UTC' or 'Europe/Prague'") from None
    return tz


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where one table comes from: a file (CSV or Parquet, path or glob) or a SQL database."""

    path: str | None = Field(None, description="CSV or Parquet file or glob, relative to data_dir")
    format: Literal["csv", "parquet"] | None = Field(None, description="default: from the file extension")
    url: str | None = Field(None, description="SQLAlchemy URL, e.g. postgresql://user@host/db")
    table: str | None = Field(None, description="with url: the table to read")
    query: str | None = Field(None, description="with url: a SELECT to read instead of a table")
    csv_delimiter: str = Field(",", description="CSV field separator, e.g. ';'")
    csv_encoding: str = Field("utf-8", description="CSV text encoding, e.g. 'cp1250'")

    @field_validator("csv_encoding")
    @classmethod
    def _text_encoding(cls, name: str) -> str:
        try:
            known = codecs.lookup(name)
        except LookupError:
            known = None
        if known is None or not getattr(known, "_is_text_encoding", True):  # e.g. 'base64' decodes to bytes
            raise ValueError(f"unknown text encoding {name!r}; use a Python codec name such as 'utf-8', 'cp1252' "
                             "or 'latin-1'")
        return name

    @model_validator(mode="after")
    def _one_kind(self) -> "SourceConfig":
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' (a file or glob) or 'url' (a SQLAlchemy URL)")
        if self.url is not None and (self.table is None) == (self.query is None):
            raise ValueError("a SQL source needs exactly one of 'table' or 'query'")
        return self


class TableConfig(_Strict):
    """One table of the data contract: its source, its column names and how its dates are written."""

    source: SourceConfig = Field(description="where the table comes from")
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="contract column -> column name in the source")
    date_format: str | None = Field(None, description="strftime format of dates, default: ISO 8601; values with a "
                                                      "UTC offset need %z in it")

    @field_validator("date_format")
    @classmethod
    def _strptime_format(cls, fmt: str | None) -> str | None:
        if fmt is None:
            return None
        if not any(code in fmt for code in ("%Y", "%y", "%G")):
            raise ValueError(f"date_format {fmt!r} has no year (%Y or %y); use strftime codes such as '%d/%m/%Y', "
                             "or leave it out for ISO 8601 dates")
        sample = dt.datetime(2026, 10, 5, 13, 4, 5, tzinfo=dt.timezone.utc)
        try:
            dt.datetime.strptime(sample.strftime(fmt), fmt)
        except ValueError as exc:
            raise ValueError(f"date_format {fmt!r} is not a strftime format ({exc})") from None
        return fmt


class ValidationConfig(_Strict):
    max_reject_share: float = Field(0.01, ge=0, le=1, description="a table whose rejected share is larger fails "
                                                                   "the run (its rows stay in quarantine)")
    fx_max_staleness_days: int = Field(7, ge=0, description="an exchange rate older than this on the transaction "
                                                            "date is no rate")
    batch_rows: int = Field(1_000_000, gt=0, description="rows validated at a time: a Parquet source is read "
                                                         "in batches of this size and each batch is typed, checked "
                                                         "and written before the next, so memory stays bounded "
                                                         "whatever the table's size")
    duckdb_memory_limit: str = Field("2GB", description="DuckDB's memory in validation (the pass over a large "
                                                        "table's unique keys, the per-day rows of the "
                                                        "transactions); it spills to disk beyond this")


class HorizonsConfig(_Strict):
    churn_days: int = Field(90, gt=0, description="churn, win-back and subscription labels look at [t, t + this)")
    cltv_days: int = Field(365, gt=0, description="the CLTV label: net revenue in [t, t + this)")
    activity_window_days: int = Field(365, gt=0, description="a customer with an order in this many days before "
                                                             "the cutoff is active, otherwise lapsed")


class SnapshotsConfig(_Strict):
    cadence: Literal["monthly", "weekly"] = Field("monthly", description="cutoffs of the training stack: first "
                                                                          "days of months or Mondays")
    lookback_months: int = Field(24, gt=0, description="how far back the training stack's cutoffs go")
    duckdb_memory_limit: str = Field("4GB", description="DuckDB spills to data_dir/tmp beyond this")


class SparkConfig(_Strict):
    """Where and how ``engine: spark`` runs (docs/spark.md)."""

    master: str = Field("local[2]", description="the Spark master: local[N] on this machine, or a cluster's "
                                                "(spark://host:7077, yarn, k8s://...)")
    conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings, e.g. "
                                                                   "spark.executor.memory: 8g (they win over the "
                                                                   "local defaults)")
    training_sample_customers: int | None = Field(None, gt=0, description="train on the labeled stack of this "
                                                                          "many customers, drawn by a hash of "
                                                                          "customer_id (every cutoff of each); "
                                                                          "null: every customer")
    score_partitions: int = Field(8, gt=0, description="partitions the scoring snapshot is split into for "
                                                       "scoring and explaining on the executors")


class BoostingConfig(_Strict):
    """One model's own LightGBM settings (``models.per_model``): each one given replaces the shared setting."""

    learning_rate: float | None = Field(None, gt=0, le=1, description="boosting learning rate")
    num_leaves: int | None = Field(None, gt=1, description="leaves per tree")
    max_depth: int | None = Field(None, ge=-1, description="-1 = no limit")
    min_child_samples: int | None = Field(None, gt=0, description="fewest rows in a leaf")
    max_rounds: int | None = Field(None, gt=0, description="boosting rounds at most")
    early_stopping_rounds: int | None = Field(None, gt=0, description="stop after this many rounds without "
                                                                      "improvement on the validation cutoffs")


class ModelsConfig(_Strict):
    """LightGBM settings shared by every model of the catalogue (models/catalog.py), and the promotion margins.
    A model's catalogue entry may tune its own boosting settings (``ModelSpec.boosting``), and ``per_model``
    overrides both for a model named there."""

    seed: int = Field(42, description="LightGBM's random seed")
    threads: int = Field(2, gt=0, description="LightGBM threads; results are reproducible for a fixed count")
    learning_rate: float = Field(0.1, gt=0, le=1, description="boosting learning rate")
    num_leaves: int = Field(4, gt=1, description="leaves per tree")
    max_depth: int = Field(2, ge=-1, description="-1 = no limit; shallow trees keep TreeSHAP cheap "
                                                  "(its cost grows with depth squared)")
    min_child_samples: int = Field(200, gt=0, description="fewest rows in a leaf")
    max_rounds: int = Field(1000, gt=0, description="boosting rounds at most")
    early_stopping_rounds: int = Field(50, gt=0, description="stop after this many rounds without improvement on "
                                                             "the validation cutoffs")
    validation_cutoffs: int = Field(2, gt=0, description="latest training cutoffs held out for early stopping "
                                                         "and calibration")
    min_positives: int = Field(30, gt=0, description="a model whose training rows hold fewer positive outcomes "
                                                     "than this (churned, reactivated, cancelled; CLTV: customers "
                                                     "who bought) steps aside, with the reason, and the others "
                                                     "go on (with fewer, a backtest AUC is too uncertain to "
                                                     "compare with the baselines and the champion)")
    promotion_margin_auc: float = Field(0.005, description="a classifier challenger needs this much more ROC AUC "
                                                           "(and no worse ECE) to become champion")
    promotion_margin_gini: float = Field(0.005, description="a regressor challenger needs this much more "
                                                            "normalized Gini to become champion")
    promotion_margin_days: float = Field(0.1, ge=0, description="a next-order challenger needs a median absolute "
                                                                "error this many days lower to become champion")
    per_model: dict[str, BoostingConfig] = Field(
        default_factory=dict, description="model name -> its own boosting settings (learning_rate, num_leaves, "
                                          "max_depth, min_child_samples, max_rounds, early_stopping_rounds), "
                                          "replacing the shared ones and the catalogue's for that model")

    def for_model(self, name: str, tuned: dict | None = None) -> "ModelsConfig":
        """These settings for the model ``name``: the shared ones, then its catalogue entry's ``tuned`` boosting
        settings, then ``per_model[name]``."""
        update = {**(tuned or {}), **(self.per_model[name].model_dump(exclude_none=True)
                                      if name in self.per_model else {})}
        return self.model_copy(update={**update, "per_model": {}}) if update else self

    def lgb_params(self) -> dict:
        """Keyword arguments of LightGBM's scikit-learn estimators (deterministic, row-wise histograms)."""
        return dict(n_estimators=self.max_rounds, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
                    max_depth=self.max_depth,
                    min_child_samples=self.min_child_samples, subsample=0.8, subsample_freq=1,
                    colsample_bytree=0.8, reg_lambda=1.0, random_state=self.seed, n_jobs=self.threads,
                    deterministic=True, force_row_wise=True, verbose=-1)


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(None, description="default: sqlite database under data_dir/mlflow")


class OutputsConfig(_Strict):
    dir: str = Field("outputs", description="lists, reports and plots, relative to data_dir")
    sql_url: str | None = Field(None, description="SQLAlchemy URL the lists are also written to; default: "
                                                  "sqlite:///<data_dir>/<outputs.dir>/lists.db")
    include_contact: bool = Field(False, description="join e-mail, name and phone to the published lists")
    sql_lock_timeout_seconds: float = Field(30.0, gt=0, description="how long a publish waits for other readers "
                                                                     "or writers of the SQL target to let go; "
                                                                     "then it fails with nothing published")


class ExportTarget(_Strict):
    """One export file per list (``serving/exports.py``): which lists, groups and columns, and the file's dialect."""

    lists: list[str] | None = Field(None, description="the lists it takes (default: every list)")
    groups: list[Literal["treatment", "control"]] | None = Field(
        None, description="contact groups it keeps (treatment only for anything that contacts people); null: both")
    columns: list[str] | dict[str, str] | None = Field(
        None, description="columns in file order, or {list column: name in the file}; a column the list lacks is "
                          "left out; null: every column")
    format: Literal["csv", "xlsx"] = Field("csv", description="CSV or an Excel workbook")
    locale: str = Field("en_US", description="CLDR locale of the numbers: its decimal separator, and ';' as the "
                                             "delimiter where that is a comma (cs_CZ, de_DE)")
    delimiter: str | None = Field(None, description="CSV delimiter; null: from the locale")
    bom: bool = Field(False, description="start the CSV with a UTF-8 byte order mark (what Excel needs to read "
                                         "UTF-8) and end lines with CRLF")
    date_format: str = Field("%Y-%m-%d", description="strftime format of the date columns")

    @field_validator("locale")
    @classmethod
    def _cldr(cls, value: str) -> str:
        from babel import Locale, UnknownLocaleError

        try:
            Locale.parse(value)
        except (UnknownLocaleError, ValueError):
            raise ValueError(f"unknown locale {value!r}; use a CLDR locale such as 'en_US', 'cs_CZ' or "
                             "'de_DE'") from None
        return value


# the exports written when the config has no `exports:` section (docs/lists.md)
READY_EXPORTS = {
    "crm": ExportTarget(groups=["treatment"], columns=["customer_id", "email", "name", "phone", "language",
                                                        "campaign_id", "recommended_action", "offer", "playbook",
                                                        "risk_tier", "expected_next_order_date"]),
    "excel": ExportTarget(groups=["treatment"], bom=True),
    "audit": ExportTarget(),
}


class ScoringConfig(_Strict):
    """Batch scoring: which snapshot is scored and what counts as at risk."""

    as_of: dt.date | None = Field(None, description="the scoring cutoff; default: the day after the latest "
                                                    "transaction")
    allow_as_of_after_data: bool = Field(False, description="score at an as-of date later than the day after the "
                                                            "data's last day (every customer then looks silent "
                                                            "for the gap); `--force-as-of` sets it for one run")
    next_order_date_max_churn: float = Field(0.5, gt=0, le=1, description="an active customer gets an "
                                                                         "expected next order date only when their "
                                                                         "churn probability is below this (the "
                                                                         "date assumes they still buy)")
    reasons_file: str | None = Field(None, description="reason templates (relative to data_dir); default: the "
                                                       "shipped configs/reasons.yaml")
    drift_warn_psi: float = Field(0.1, gt=0, description="a model feature or score whose PSI against the "
                                                         "champion's training rows reaches this is a drift warning")
    drift_alert_psi: float = Field(0.25, gt=0, description="... and an alert at this PSI (models/monitoring.py)")
    block_on_drift: bool = Field(False, description="refuse to publish when a drift alert fires (the last lists "
                                                    "stay as they are)")
    live_performance_margin: float = Field(0.05, ge=0, description="flag a model whose live ROC AUC (CLTV: "
                                                                   "normalised Gini) on a past run's scores is "
                                                                   "more than this below its backtest "
                                                                   "(serving/live.py)")

    @model_validator(mode="after")
    def _drift_thresholds(self):
        if self.drift_alert_psi < self.drift_warn_psi:
            raise ValueError(f"drift_alert_psi ({self.drift_alert_psi}) is below drift_warn_psi "
                             f"({self.drift_warn_psi}); the alert threshold must be the higher one")
        return self


class TargetingConfig(_Strict):
    """Who is contacted: risk tiers, playbooks, budgets per list, the control group, consent."""

    playbooks_file: str | None = Field(None, description="playbooks (relative to data_dir); default: the shipped "
                                                         "configs/playbooks.yaml")
    risk_tiers: dict[str, float] = Field(default_factory=lambda: {"high": 0.6, "medium": 0.3},
                                         description="tier -> minimum churn probability; below all: 'low'")
    budgets: dict[str, float | None] = Field(
        default_factory=dict, description="campaign budget per list (list name -> amount in the base currency); a "
                                          "list not named, or null, has no limit")
    control_share: float = Field(0.10, ge=0, lt=1, description="share withheld from contact as the control group")
    campaign_prefix: str = Field("retention", description="campaign_id = <prefix>-<list>-<as_of>")
    require_consent: bool = Field(True, description="without a customers table (no consent known) nobody is "
                                                    "selected unless this is false")
    min_tier: str | None = Field("medium", description="the at-risk list (and the summary's at-risk count) holds "
                                                       "the active customers of this risk tier or a higher one; "
                                                       "null: every tier, 'low' included")

    @model_validator(mode="after")
    def _known_tier(self) -> "TargetingConfig":
        if self.min_tier is not None and self.min_tier not in self.risk_tiers:
            raise ValueError(f"min_tier {self.min_tier!r} is not one of the risk_tiers {sorted(self.risk_tiers)}; "
                             "name one of them or null (every tier)")
        return self

    @property
    def at_risk_threshold(self) -> float:
        """The churn probability from which an active customer is at risk (0: everyone, with no min_tier)."""
        return self.risk_tiers[self.min_tier] if self.min_tier is not None else 0.0

    @field_validator("risk_tiers")
    @classmethod
    def _probabilities(cls, tiers: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in tiers.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"risk tier thresholds are probabilities between 0 and 1, got {bad}")
        return tiers


class ScheduleEntry(_Strict):
    """When a deployment runs: a cron string (5 fields, in ``schedule.timezone``) or a fixed interval."""

    cron: str | None = Field(None, description="5-field cron string")
    interval_seconds: int | None = Field(None, gt=0, description="or a fixed interval")

    @model_validator(mode="after")
    def _one_kind(self) -> "ScheduleEntry":
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, dt.datetime(2000, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from None
        return self


class ScheduleConfig(_Strict):
    """Deployments served by `churn schedule` (and declared in prefect.yaml for work pools)."""

    score: ScheduleEntry = Field(ScheduleEntry(cron="0 6 * * *"), description="batch scoring")
    train: ScheduleEntry = Field(ScheduleEntry(cron="0 3 1 * *"), description="retraining")
    timezone: str = Field("UTC", description="time zone of the cron strings (IANA name)")
    _valid_timezone = field_validator("timezone")(lambda tz: _iana_zone(tz))
    server_port: int = Field(4200, gt=0, lt=65536, description="port of the local Prefect server `churn schedule` "
                                                                "starts when PREFECT_API_URL is not set")


class GeneratorConfig(_Strict):
    customers: int = Field(20_000, gt=0, description="customers `churn generate` simulates")
    seed: int = Field(42, description="its random seed: the same seed gives byte-identical files")
    scenario: str = Field("default", description="the kind of business simulated, one of the generator's named "
                                                 "scenarios (docs/synthetic.md#scenarios)")


TABLE_NAMES = ("transactions", "customers", "support_tickets", "surveys", "web_sessions", "email_events",
               "subscriptions", "fx_rates")


class PipelineConfig(_Strict):
    """The whole pipeline's configuration (one object, handed out in typed parts)."""

    data_dir: Path = Field(Path("data"), description="everything the pipeline reads and writes lives below it "
                                                     "(relative to the current directory)")
    raw_dir: str = Field("raw", description="where `churn generate` writes by default, relative to data_dir")
    as_of: dt.date | None = Field(None, description="the data's as-of date; default: today (CLI only)")
    timezone: str = Field("UTC", description="time zone of naive timestamps in the sources (IANA name); "
                                             "timestamps with an offset are converted to it")
    base_currency: str = Field("USD", description="ISO 4217 code every amount is converted to (with fx_rates)")
    tables: dict[str, TableConfig] = Field(description="one entry per table of the data contract "
                                                       "(docs/contract.md); only transactions is required")
    engine: Literal["duckdb", "spark"] = Field("duckdb", description="where features are built and customers "
                                                                       "scored: duckdb (in-process) or spark "
                                                                       "(the spark section)")
    spark: SparkConfig = SparkConfig()
    validation: ValidationConfig = ValidationConfig()
    horizons: HorizonsConfig = HorizonsConfig()
    snapshots: SnapshotsConfig = SnapshotsConfig()
    models: ModelsConfig = ModelsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    outputs: OutputsConfig = OutputsConfig()
    scoring: ScoringConfig = ScoringConfig()
    targeting: TargetingConfig = TargetingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    generator: GeneratorConfig = GeneratorConfig()
    exports: dict[str, ExportTarget] | None = Field(None, description="named export files per list "
                                                                      "(serving/exports.py); null: the ready crm, "
                                                                      "excel and audit targets")

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: dict[str, TableConfig]) -> dict[str, TableConfig]:
        unknown = sorted(set(tables) - set(TABLE_NAMES))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; expected some of {list(TABLE_NAMES)}")
        if "transactions" not in tables:
            raise ValueError("the 'transactions' table is required")
        return tables

    _valid_timezone = field_validator("timezone")(lambda tz: _iana_zone(tz))

    @field_validator("base_currency")
    @classmethod
    def _iso_currency(cls, code: str) -> str:
        import pycountry

        normal = code.strip().upper()  # 'usd' is USD: the data's codes are compared in upper case
        if len(normal) != 3 or pycountry.currencies.get(alpha_3=normal) is None:
            raise ValueError(f"{code!r} is not an ISO 4217 currency code")
        return normal

    def resolve(self, relative: str | Path) -> Path:
        """A path from the config: absolute as given, otherwise relative to ``data_dir``."""
        path = Path(relative)
        return path if path.is_absolute() else self.data_dir / path

    @property
    def raw_path(self) -> Path:
        return self.resolve(self.raw_dir)

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def validated_dir(self) -> Path:
        return self.data_dir / "validated"


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$CHURN_CONFIG``, else ``configs/default.yaml``."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load and check the configuration.

    Parameters
    ----------
    path
        YAML file; default from :func:`config_path`.
    overrides
        Dotted keys to replace after reading, e.g. ``{"as_of": "2026-11-01", "data_dir": "/tmp/d"}``.
    """
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (pass --config PATH or set {CONFIG_ENV})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_problems(exc)}") from None
