"""Time score + explain + publish at scale with the registered champions.

Usage: python bench/bench_scoring.py --data-dir DATA [--snapshot FOLDER] [--customers 1000000]
                                     [--published-share 0.2]

DATA must hold validated data, its scoring snapshot and trained champions (for example after `make run`, or
`churn run --data-dir DATA`). ``--snapshot`` scores another snapshot folder with those champions, for example the
one `churn features --data-dir BIG` writes for the generated 1M-customer data (``churn generate --customers
1000000``): a million distinct customers, so every distinct value is formatted. Without it, DATA's scoring snapshot
is replicated (customer ids suffixed) up to ``--customers`` rows: the real models and distributions, but each
customer repeated, which flatters the reason texts' per-value formatting. The stages timed:

* score: BG/NBD + Gamma-Gamma fit and the three champions on every customer (``serving.scoring.score_snapshot``);
* rank: the ranked lists (``build_lists``);
* explain: LightGBM's exact TreeSHAP (``pred_contrib``) and the reason texts for the published share, the top
  customers of both lists by value (``add_reasons``);
* publish: Parquet + CSV files and the SQLite tables, atomically (``publish_lists``).

It also times ``shap.TreeExplainer`` and LightGBM's ``pred_contrib`` on the same 5,000 rows and prints both rates.
Each stage prints wall time, CPU seconds, peak RSS and the 1-minute load before and after (``bench/measure.py``);
the stages share one process, so a stage's peak RSS is the process's peak so far (what it was at the stage's
start is printed beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.lists import LISTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--snapshot", type=Path, help="snapshot folder to score (default: DATA's, replicated)")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--published-share", type=float, default=0.2)
    args = parser.parse_args()
    command = measure.started()
    with measure.measured("the whole bench") as total:
        figures = _stages(args)
    print(json.dumps(figures, indent=2))
    measure.finished(total, command)


def _stages(args) -> dict:
    """Run and time every stage, printing each one's figures as it ends; returns the figures."""
    from common.config import load_config
    from features.snapshots import read_snapshots
    from pipelines import jobs
    from serving.publish import publish_lists
    from serving.reasons import load_reasons
    from serving.scoring import add_reasons, build_lists, score_snapshot

    def done(stage: measure.Figures) -> None:
        print(stage.line(), flush=True)

    with measure.measured("load the snapshot and the champions") as load:
        cfg = load_config(None, {"data_dir": str(args.data_dir)})
        cutoff = jobs.scoring_cutoff(cfg, jobs.last_data_day(cfg))
        if args.snapshot:
            snapshot = read_snapshots(args.snapshot).head(args.customers)
            cutoff = pd.Timestamp(snapshot["cutoff"].iloc[0]).date()
        else:
            base = read_snapshots(cfg.data_dir / "features" / f"snapshot_{cutoff.isoformat()}")
            copies = -(-args.customers // len(base))
            snapshot = pd.concat([base.assign(customer_id=base["customer_id"] + f"-{k:03d}")
                                  for k in range(copies)], ignore_index=True).head(args.customers)
        champions = jobs.load_champions(cfg)
    done(load)
    figures = {"customers": len(snapshot), "snapshot": str(args.snapshot or "replicated"),
               "features": len(champions[LISTS[0].model.name].model.features),
               "trees": {n: c.model.best_iteration for n, c in champions.items()}}

    with measure.measured("score") as score:
        scores, inputs = score_snapshot(snapshot, champions, cfg.horizons, with_inputs=True)
    done(score)
    figures["score_s"] = round(score.wall_s, 1)

    with measure.measured("rank") as rank:
        ranked = build_lists(scores, champions, "bench")
        keep = {name: int(round(len(frame) * args.published_share)) for name, frame in ranked.items()}
        published = {name: frame.head(keep[name]).assign(risk_tier="-") for name, frame in ranked.items()}
    done(rank)
    figures["rank_s"] = round(rank.wall_s, 1)
    figures["published_rows"] = sum(keep.values())

    catalog = load_reasons(jobs.reasons_path(cfg))
    with measure.measured("explain and reasons") as explain:
        explained = add_reasons(published, inputs, champions, catalog, cfg.base_currency, cfg.horizons)
    done(explain)
    figures["explain_and_reasons_s"] = round(explain.wall_s, 1)

    with tempfile.TemporaryDirectory() as tmp:
        with measure.measured("publish") as publish:
            publish_lists(explained, Path(tmp), cutoff, {"run_id": "bench"}, sql=f"sqlite:///{tmp}/lists.db")
    done(publish)
    figures["publish_s"] = round(publish.wall_s, 1)
    figures["total_s"] = round(figures["score_s"] + figures["rank_s"] + figures["explain_and_reasons_s"]
                               + figures["publish_s"], 1)
    done(measure.combined("score + rank + explain + publish", [score, rank, explain, publish]))

    # exact TreeSHAP on the same 5,000 rows: LightGBM's own against shap's
    import shap

    from models.training import design_matrix

    model = champions[LISTS[0].model.name].model
    rows = inputs[scores["is_active"].to_numpy()].head(5000)
    X = design_matrix(rows, model.features, model.categories)
    with measure.measured(f"LightGBM pred_contrib on {len(rows):,} rows") as lgb:
        ours = model.booster.predict(X, pred_contrib=True, num_iteration=model.best_iteration)
    explainer = shap.TreeExplainer(model.booster)
    with measure.measured(f"shap TreeExplainer on {len(rows):,} rows") as tree:
        theirs = explainer.shap_values(X)
    done(lgb)
    done(tree)
    theirs = theirs[1] if isinstance(theirs, list) else theirs
    figures["treeshap_rows_per_s"] = {"lightgbm_pred_contrib": round(len(rows) / lgb.wall_s),
                                      "shap_TreeExplainer": round(len(rows) / tree.wall_s),
                                      "max_abs_difference": float(np.abs(ours[:, :-1] - theirs).max())}
    return figures


if __name__ == "__main__":
    main()
