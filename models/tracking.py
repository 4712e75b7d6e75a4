"""The one module that talks to MLflow: runs, the model registry, champion/challenger aliases.

Embedded by default: a SQLite tracking store ``<data_dir>/mlflow/mlflow.db`` and artifacts under
``<data_dir>/mlflow/artifacts``, no server. When ``mlflow.tracking_uri`` names a server, the same calls go there.

Each model of :data:`models.catalog.MODELS` is registered under its name. A new version takes the alias
``challenger``; it takes ``champion`` only when there is none or when it beats the champion on the same evaluation
cutoff by the margin its declaration names (:func:`decide_promotion`). The decision and both sets of
numbers are flat tags on the new version (``challenger.roc_auc``, ``champion.roc_auc``, ...), and its description
says the same in one sentence (:func:`version_description`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from common.config import ModelsConfig, PipelineConfig
from common.errors import ChurnError
from models import catalog

if TYPE_CHECKING:
    from models.training import ScoringModel

MODEL_NAMES = tuple(catalog.names())
EXPERIMENT = "churn-pipeline"


def tracking_uri(cfg: PipelineConfig) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    folder = (cfg.data_dir / "mlflow").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


class _KnownHarmless(logging.Filter):
    """Drops two MLflow warnings that do not apply here: the model is our own pickled class (loaded only from our
    own registry), and uv-made environments have no pip to report a version of."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("python_model` causes it to be serialized using CloudPickle" in message
                    or "Failed to resolve installed pip version" in message)


def _mlflow(cfg: PipelineConfig):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    for name in ("mlflow.pyfunc", "mlflow.utils.environment"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownHarmless) for f in logger.filters):
            logger.addFilter(_KnownHarmless())

    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    return mlflow


def _experiment_id(cfg: PipelineConfig, client) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if not cfg.mlflow.tracking_uri:
        location = (cfg.data_dir / "mlflow" / "artifacts").resolve().as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


def _python_model_class():
    import mlflow.pyfunc

    class ScoringPyfunc(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper: ``predict`` returns calibrated probabilities (classifiers) or expected values."""

        def __init__(self, model: ScoringModel):
            self.model = model

        def predict(self, context, model_input: pd.DataFrame, params=None):
            return pd.Series(self.model.score(model_input), name=self.model.label)

    return ScoringPyfunc


def pip_requirements() -> list[str]:
    """What loading the model needs, pinned to the running versions (explicit: MLflow's inference of them is slow)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "mlflow")]


# ---- promotion -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide_promotion(name: str, challenger: dict[str, float], champion: dict[str, float] | None,
                     margins: ModelsConfig) -> Decision:
    """Whether the challenger takes ``champion``, from metrics on the same evaluation cutoff.

    The rule is the model's :class:`models.catalog.Promotion`: classifiers need ROC AUC at least
    ``promotion_margin_auc`` higher and an ECE no worse; regressors a normalized Gini at least
    ``promotion_margin_gini`` higher. No champion: promote. A champion without comparable metrics
    (:func:`champion_evaluation`): keep it.
    """
    if champion is None:
        return Decision(True, "no champion yet")
    if champion.get("comparable") is False:
        return Decision(False, f"no fair comparison: the champion {champion['source']}; compare the backtests and "
                               "use `churn promote` to switch by hand")
    rule = catalog.get(name).promotion
    margin = getattr(margins, rule.margin)
    gain = rule.gain(challenger, champion)  # positive: the challenger is better
    if gain < margin:
        return Decision(False, f"{rule.label} {gain:+.4f} < margin {margin}")
    for metric in rule.not_worse:
        if challenger[metric] > champion[metric]:
            return Decision(False, f"{rule.label} +{gain:.4f} but {metric.upper()} worse ({challenger[metric]:.4f} > "
                                   f"{champion[metric]:.4f})")
    kept = "".join(f", {metric.upper()} not worse" for metric in rule.not_worse)
    return Decision(True, f"{rule.label} +{gain:.4f} >= margin {margin}{kept}")


def champion_evaluation(evaluation: dict, logged: dict, load_model, rescore) -> dict:
    """The champion's metrics on the challenger's evaluation cutoff, out of sample, as :func:`decide_promotion`
    compares them.

    * Its own logged backtest (``logged``, the ``challenger_metrics`` it was registered with) when that was on the
      same cutoff and the same data: the same rows, the same protocol.
    * Else ``rescore(model)``, its metrics on the challenger's evaluation rows, when it was not trained on that
      cutoff (the usual case: the data moved on since).
    * A champion trained on the evaluation cutoff has seen those outcomes: rescoring would be in-sample and favour
      it (the more so the more it overfits). Its logged backtest on the same cutoff is used when there is one (the
      data changed since, which the ``source`` says); else the two are not comparable (``comparable: False``).
    """
    as_of = evaluation["eval_as_of"]
    same_cutoff = logged.get("eval_as_of") == as_of
    if same_cutoff and logged.get("data_hash") == evaluation["data_hash"]:
        return {**logged, "source": "its own backtest on the same cutoff and data"}
    model = load_model()
    trained_on = {pd.Timestamp(c).date().isoformat() for c in model.training_cutoffs}
    if as_of not in trained_on:
        return {**rescore(model), "eval_as_of": as_of, "source": "rescored on this cutoff"}
    if same_cutoff:
        return {**logged, "source": "its own backtest on the same cutoff (the data changed since; rescoring would "
                                    "be in-sample: it was trained on this cutoff)"}
    return {"comparable": False, "eval_as_of": as_of,
            "source": f"it was trained on the evaluation cutoff {as_of} and has no backtest there"}


# ---- logging a trained model ------------------------------------------------------------------------------------


def _is_metric(value) -> bool:
    """A finite-or-infinite number that is not a bool and not NaN (NaN is not a metric)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


@dataclass
class Registered:
    name: str
    version: str
    run_id: str
    decision: Decision


def log_and_register(cfg: PipelineConfig, model: ScoringModel, evaluation: dict, report: dict, fingerprint: dict,
                     plots: list[Path], input_example: pd.DataFrame, champion_metrics_fn,
                     shap_plots: list[Path] = ()) -> Registered:
    """Log one run for ``model`` (config, fingerprint, backtest metrics with baselines, plots, features, model,
    the global SHAP summary plots under ``shap/``), register a version, give it ``challenger`` and decide
    ``champion``.

    ``evaluation`` holds the challenger's key metrics on the evaluation cutoff (with ``eval_as_of`` and
    ``data_hash``). The champion is compared on the same cutoff, out of sample (:func:`champion_evaluation`;
    ``champion_metrics_fn(champion_model)`` gives its metrics on the challenger's evaluation rows)."""
    mlflow = _mlflow(cfg)
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    client = MlflowClient()
    experiment_id = _experiment_id(cfg, client)
    params = _leaves("", json.loads(cfg.model_dump_json()), {})
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model.name} {evaluation['eval_as_of']}") as run:
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k[:250], str(v)[:6000])
                                                  for k, v in params.items()])
        leaves = _leaves("backtest", {k: v for k, v in report.items() if k != "horizons"}, {})
        client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric(k, float(v), 0, 0)
                                                   for k, v in leaves.items() if _is_metric(v)])
        mlflow.set_tags({"model_name": model.name, "eval_as_of": evaluation["eval_as_of"],
                         "data_hash": fingerprint["hash"], "best_iteration": str(model.best_iteration)})
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "features.json").write_text(json.dumps(model.features, indent=2))
            (tmp / "data_fingerprint.json").write_text(json.dumps(fingerprint, indent=2, default=str))
            (tmp / "backtest_report.json").write_text(json.dumps(report, indent=2, default=str))
            for path in [*plots, tmp / "features.json", tmp / "data_fingerprint.json", tmp / "backtest_report.json"]:
                mlflow.log_artifact(str(path), artifact_path="backtest" if path in plots else None)
            for path in shap_plots:
                mlflow.log_artifact(str(path), artifact_path="shap")
        # numbers as doubles (an integer column cannot hold a missing value); inferred from the first rows plus,
        # for each column with a missing value among the evaluation rows, its first such row, so that exactly
        # those columns are marked optional (the same signature as from every row, without reading them all)
        inputs = input_example[model.input_columns].astype({c: "float64" for c in model.features
                                                            if pd.api.types.is_integer_dtype(input_example[c])})
        inputs = signature_rows(inputs)
        signature = infer_signature(inputs, model.score(inputs))
        info = mlflow.pyfunc.log_model(name="model", python_model=_python_model_class()(model),
                                       signature=signature, input_example=inputs.head(5),
                                       pip_requirements=pip_requirements())
        run_id = run.info.run_id
    with contextlib.redirect_stderr(io.StringIO()):  # register_model prints "Created version ..." to stderr
        version = mlflow.register_model(info.model_uri, model.name).version
    client.set_registered_model_alias(model.name, "challenger", version)
    champion = _alias_version(client, model.name, "champion")
    champion_metrics = None
    if champion is not None:
        logged = metrics_from_tags(champion.tags or {}, "challenger")
        champion_metrics = champion_evaluation(evaluation, logged, lambda: load_champion(cfg, model.name)[1],
                                               champion_metrics_fn)
    decision = decide_promotion(model.name, evaluation, champion_metrics, cfg.models)
    tags = {"decision": "promoted" if decision.promote else "kept champion", "decision_reason": decision.reason,
            "champion_version": champion.version if champion else "",
            **{f"challenger.{k}": str(v) for k, v in evaluation.items()},
            **{f"champion.{k}": str(v) for k, v in (champion_metrics or {}).items()}}
    for key, value in tags.items():
        client.set_model_version_tag(model.name, version, key, value)
    client.update_model_version(model.name, version, description=version_description(
        model.name, decision, evaluation, champion_metrics, champion.version if champion else None))
    if decision.promote:
        client.set_registered_model_alias(model.name, "champion", version)
    return Registered(model.name, str(version), run_id, decision)


def signature_rows(frame: pd.DataFrame, first: int = 5) -> pd.DataFrame:
    """The rows a model signature is inferred from: the ``first`` rows and, for every column with a missing value,
    the first row where it is missing (so the signature marks those columns optional, and only those)."""
    missing = frame.isna().to_numpy()
    has = missing.any(axis=0)
    rows = np.union1d(np.arange(min(first, len(frame))), missing[:, has].argmax(axis=0))
    return frame.iloc[rows]


def metrics_from_tags(tags: dict[str, str], prefix: str) -> dict:
    """The ``<prefix>.<metric>`` tags of a model version as numbers where they are (versions registered before the
    tags were flat hold one JSON tag, ``<prefix>_metrics``, which is read the same way)."""
    if f"{prefix}_metrics" in tags and tags[f"{prefix}_metrics"]:
        return json.loads(tags[f"{prefix}_metrics"])
    out: dict = {}
    for key, value in tags.items():
        if key.startswith(prefix + "."):
            try:
                out[key[len(prefix) + 1:]] = float(value)
            except ValueError:
                out[key[len(prefix) + 1:]] = value
    return out


def version_description(name: str, decision: Decision, challenger: dict, champion: dict | None,
                        champion_version: str | None) -> str:
    """One sentence for the registry: the decision and both figures of the metric that decided it."""
    metric = catalog.get(name).promotion.metric
    mine = f"{metric} {challenger[metric]:.4f} on the backtest at {challenger['eval_as_of']}"
    if champion_version is None:
        return f"Promoted to champion: the first {name}, {mine}."
    theirs = (f"v{champion_version}'s {champion[metric]:.4f}" if champion and metric in champion
              else f"v{champion_version} (no comparable figure)")
    if decision.promote:
        return f"Promoted to champion over v{champion_version}: {mine} against {theirs} ({decision.reason})."
    return f"Not promoted, v{champion_version} stays champion: {mine} against {theirs} ({decision.reason})."


def _leaves(prefix: str, value, out: dict) -> dict:
    """Every leaf of a nested mapping under its dotted key (the whole config as run params)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value
    return out


def _alias_version(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


# ---- reading the registry ---------------------------------------------------------------------------------------


def champion_versions(cfg: PipelineConfig) -> dict[str, str | None]:
    """The ``champion`` version of every model (None where there is none)."""
    _mlflow(cfg)
    from mlflow import MlflowClient

    client = MlflowClient()
    return {name: (str(v.version) if (v := _alias_version(client, name, "champion")) else None)
            for name in MODEL_NAMES}


def champion_backtests(cfg: PipelineConfig, versions: dict[str, str]) -> dict[str, dict]:
    """The backtest figures each model ``version`` was registered with (its ``challenger.<metric>`` tags, with
    ``eval_as_of``): what it was promoted on. A version without them (``unregistered``: a dry run's) maps to {}."""
    _mlflow(cfg)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, out = MlflowClient(), {}
    for name, version in versions.items():
        try:
            tags = client.get_model_version(name, version).tags or {}
        except MlflowException:
            tags = {}
        out[name] = metrics_from_tags(tags, "challenger")
    return out


def load_champion(cfg: PipelineConfig, name: str) -> tuple[str, ScoringModel]:
    """The ``champion`` of ``name``: its version and the model, loaded by version number (so that a promotion
    while loading cannot mix versions)."""
    mlflow = _mlflow(cfg)
    from mlflow import MlflowClient

    version = _alias_version(MlflowClient(), name, "champion")
    if version is None:
        raise ChurnError(f"no champion version of {name} in the registry at {tracking_uri(cfg)}; "
                         "run `churn train` first")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return str(version.version), loaded.unwrap_python_model().model


def list_versions(cfg: PipelineConfig) -> list[dict]:
    """Every registered version of the pipeline's models with aliases, decision and key metrics."""
    _mlflow(cfg)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    rows = []
    for name in MODEL_NAMES:
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            continue
        aliases = {}
        for alias, version in (model.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        for v in client.search_model_versions(f"name='{name}'"):
            tags = v.tags or {}
            rows.append({"name": name, "version": str(v.version), "aliases": sorted(aliases.get(str(v.version), [])),
                         "created": pd.Timestamp(v.creation_timestamp, unit="ms").isoformat(timespec="seconds"),
                         "metrics": metrics_from_tags(tags, "challenger"),
                         "description": v.description or "",
                         "decision": tags.get("decision", ""), "reason": tags.get("decision_reason", ""),
                         "run_id": v.run_id})
    return sorted(rows, key=lambda r: (r["name"], int(r["version"])))


def promote(cfg: PipelineConfig, name: str, version: str, note: str = "manual") -> None:
    """Give ``name`` version ``version`` the ``champion`` alias by hand; recorded as tags on the version.

    The alias is written first and the tags after it, so a store that refuses writes (read-only files, a server
    that says no) changes nothing; that, and any later failure, is a :class:`ChurnError` saying what was changed.
    """
    import sqlalchemy

    from mlflow.exceptions import MlflowException

    failures = (MlflowException, sqlalchemy.exc.SQLAlchemyError, OSError)
    where = cfg.mlflow.tracking_uri or str(cfg.data_dir / "mlflow")

    def refused(what: str, done: list[str], exc: BaseException) -> ChurnError:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        changed = f"only {' and '.join(done)} {'was' if len(done) == 1 else 'were'} written" if done else \
            "nothing was changed"
        return ChurnError(f"cannot promote {name} version {version}: could not {what} in the MLflow store "
                          f"({detail}); {changed}. Make {where} writable for the user running churn (its "
                          "permissions and those of the files in it) and run `churn promote` again")

    store_log = logging.getLogger("mlflow.store.db.utils")  # it logs each refused write with a traceback
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        try:
            _mlflow(cfg)
            from mlflow import MlflowClient

            client = MlflowClient()
            try:
                client.get_model_version(name, version)
            except MlflowException:
                raise ChurnError(f"{name} has no version {version}; see `churn models`") from None
            previous = _alias_version(client, name, "champion")
        except failures as exc:
            raise refused("read the registry", [], exc) from None
        reason = f"{note}; previous champion: {previous.version if previous else 'none'}"
        steps = [("set the champion alias", "the champion alias",
                  lambda: client.set_registered_model_alias(name, "champion", version)),
                 ("record the decision", "the decision tag",
                  lambda: client.set_model_version_tag(name, version, "decision", "promoted by hand")),
                 ("record the reason", "the reason tag",
                  lambda: client.set_model_version_tag(name, version, "decision_reason", reason))]
        done: list[str] = []
        for what, written, step in steps:
            try:
                step()
            except failures as exc:
                raise refused(what, done, exc) from None
            done.append(written)
    finally:
        store_log.setLevel(level)


def log_monitoring(cfg: PipelineConfig, as_of: str, run_id: str, drift: dict, live: list[dict] = ()) -> str:
    """One MLflow run per scoring run (``monitoring <as_of>``, tagged ``kind=monitoring``): the PSI of every
    feature and score of each champion as metrics ``psi.<model>.<column>``, the missing-value rates as
    ``missing.<model>.<column>``, and the drift as a JSON artifact; ``live`` (the history of
    :func:`serving.live.evaluate` rows known at this run) as ``live.<model>.<metric>`` with the scored as-of
    date's ``YYYYMMDD`` as the step, and ``live.json``. Returns the MLflow run id."""
    import re

    mlflow = _mlflow(cfg)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    experiment_id = _experiment_id(cfg, client)
    safe = lambda text: re.sub(r"[^0-9A-Za-z_.\-/ ]", "_", text)  # noqa: E731 - MLflow's metric key alphabet
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitoring {as_of}",
                          tags={"kind": "monitoring", "as_of": as_of, "scoring_run_id": run_id}) as run:
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        metrics = []
        for name, state in drift.get("models", {}).items():
            for column in state["columns"]:
                if column["psi"] is not None:
                    metrics.append(Metric(safe(f"psi.{name}.{column['column']}"), float(column["psi"]), now, 0))
                metrics.append(Metric(safe(f"missing.{name}.{column['column']}"), float(column["missing_now"]),
                                      now, 0))
            metrics.append(Metric(safe(f"alerts.{name}"), float(len(state["alerts"])), now, 0))
        for row in live:
            step = int(row["as_of"].replace("-", ""))
            for key in (row["metric"], "ece", "list_precision", "live_minus_backtest", "flagged"):
                value = row.get(key)
                if value is not None and pd.notna(value):
                    metrics.append(Metric(safe(f"live.{row['model']}.{key}"), float(value), now, step))
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1,000 metrics per batch
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 900])
        mlflow.log_dict(drift, "drift.json")
        if live:
            mlflow.log_dict({"live": list(live)}, "live.json")
        return run.info.run_id
