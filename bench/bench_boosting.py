"""Boosting settings against the backtest: for each variant, every model's best iteration (where early stopping
found the validation loss lowest; the cap is ``models.max_rounds``) and its backtest figures, with the time the
backtest took. This is how the churn classifier's own learning rate was chosen (docs/models.md): early stopping
must fire, and the figures must not move.

Each variant is a JSON object of ``models`` settings (``{"learning_rate": 0.2}``; ``{}`` is the configuration as it
is; a catalogue entry's own settings still apply to its model unless the variant sets ``per_model``); ``--lgb`` adds
raw LightGBM parameters to every fit (``'{"max_bin": 63}'``). The labeled training snapshots are those `churn run`
built (``<data_dir>/features/training_snapshots``).

Usage: python bench/bench_boosting.py [--data-dir data] [--only churn-classifier,...] [--lgb JSON] VARIANT ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import measure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIGURES = ("roc_auc", "pr_auc", "brier", "normalized_gini", "spearman", "median_abs_error_days")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["{}"])
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--only", default=None, help="comma-separated model names (default: every model)")
    parser.add_argument("--lgb", default="{}", help="extra LightGBM parameters for every fit, as JSON")
    args = parser.parse_args()
    command = measure.started()

    from common.config import ModelsConfig
    from features.snapshots import latest_labeled_cutoff, open_sources, read_snapshots
    from models.backtest import run_backtest
    from models.catalog import MODELS
    from pipelines.runtime import notebook_config

    extra = json.loads(args.lgb)
    if extra:
        shared = ModelsConfig.lgb_params

        def lgb_params(self) -> dict:
            params = {**shared(self), **extra}
            if extra.get("force_col_wise"):
                params.pop("force_row_wise", None)
            return params

        ModelsConfig.lgb_params = lgb_params
    cfg = notebook_config(None, args.data_dir)
    snapshots = read_snapshots(cfg.data_dir / "features" / "training_snapshots")
    src = open_sources(cfg.validated_dir, memory_limit=cfg.snapshots.duckdb_memory_limit)
    as_of = latest_labeled_cutoff(src.last_day, cfg.horizons.churn_days)
    models = [s for s in MODELS if args.only is None or s.name in args.only.split(",")]
    runs = []
    for variant in args.variants:
        settings = cfg.models.model_copy(update=json.loads(variant))
        with measure.measured(f"variant {variant}") as figures:
            result = run_backtest(snapshots, as_of, src.last_day, cfg.horizons, cfg.snapshots, settings,
                                  models=models, first_day=src.first_day)
        runs.append(figures)
        print(f"\n{figures.line()}")
        print("| model | best iteration | " + " | ".join(FIGURES) + " |")
        print("| --- | --- |" + " --- |" * len(FIGURES))
        for spec in models:
            section, model = result.report.get(spec.section, {}), result.models.get(spec.name)
            cells = [f"{section[k]:.4f}" if isinstance(section.get(k), float) else "" for k in FIGURES]
            best = f"{model.best_iteration} of {spec.settings(settings).max_rounds}" if model else "stepped aside"
            print(f"| {spec.name} | {best} | " + " | ".join(cells) + " |")
    measure.finished(measure.combined("every variant", runs), command)


if __name__ == "__main__":
    main()
