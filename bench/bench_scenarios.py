"""Quality on data unlike the default (issue 17): for each generator scenario, generate it, write a config naming only
its tables (every other setting at its default), run `churn validate` and `churn backtest`, and print one table of
the backtest figures next to the baselines, with the issue's targets.

    .venv/bin/python bench/bench_scenarios.py [--customers 5000] [--scenarios default,short-history] [--keep]

A model that stepped aside shows its reason; a failing command shows its last line. Figures are what the backtest
report holds (models/backtest.py); nothing is computed here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from models.catalog import LAPSED, MODELS

ROOT = Path(__file__).resolve().parents[1]
CHURN = str(Path(sys.executable).with_name("churn"))
AS_OF = "2026-11-01"


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([CHURN, *args], cwd=ROOT, capture_output=True, text=True)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(scenario: str, report: dict) -> dict:
    base = report["baselines"]
    row = {"scenario": scenario}
    churn = report["churn"]
    best = max(((name, b["churn"]["roc_auc"]) for name, b in base.items() if "churn" in b), key=lambda x: x[1])
    mark = "" if churn["roc_auc"] > best[1] else " ✗"
    row["churn AUC model / best baseline"] = f"{churn['roc_auc']:.3f} / {best[1]:.3f} ({best[0]}){mark}"
    limit = 0.02 if scenario == "default" else 0.03
    row["churn ECE"] = f"{churn['ece']:.3f}" + ("" if churn["ece"] <= limit else " ✗")
    lapsed = next(s.section for s in MODELS if s.population is LAPSED)  # the win-back model's report section
    winback = report.get(lapsed, {})
    row["winback AUC model / btyd"] = (f"skipped: {winback['skipped'][:60]}" if "skipped" in winback else
                                       f"{winback['roc_auc']:.3f} / {base['btyd'][lapsed]['roc_auc']:.3f}")
    cltv = report.get("cltv", {})
    if "skipped" in cltv:
        row["CLTV Gini model / btyd"] = f"skipped: {cltv['skipped'][:60]}"
        row["CLTV total error model / btyd"] = "-"
    else:
        b = base["btyd"]["cltv"]
        row["CLTV Gini model / btyd"] = f"{cltv['normalized_gini']:.3f} / {b['normalized_gini']:.3f}"
        row["CLTV total error model / btyd"] = (f"{cltv['total_error']:+.1%} / {b['total_error']:+.1%}"
                                                + ("" if abs(cltv["total_error"]) <= 0.10 else " ✗"))
    model = report["next_order"]["median_abs_error_days"]
    others = {name: b["next_order"]["median_abs_error_days"] for name, b in base.items() if "next_order" in b}
    beats = all(model <= 0.9 * v for v in others.values())
    row["next-order MAE days: btyd / baselines"] = (f"{_fmt(model, 1)} / "
                                                    + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in others.items())
                                                    + ("" if beats else " ✗"))
    return row


def main() -> None:
    from features.synthetic.scenarios import SCENARIOS, scenario_tables

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scenarios-"))
    rows, raw = [], {}
    for name in args.scenarios.split(","):
        start = time.perf_counter()
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        steps = [["generate", "--scenario", name, "--customers", str(args.customers), "--seed", str(args.seed),
                  "--out", str(folder / "raw")]]
        config = folder / "config.yaml"
        config.write_text(yaml.safe_dump({"data_dir": str(folder), "as_of": AS_OF, "tables": {
            t: {"source": {"path": f"raw/{t}.parquet"}} for t in scenario_tables(name)}}))
        steps += [["validate", "--config", str(config)], ["backtest", "--config", str(config)]]
        failed = None
        for step in steps:
            done = _run(step)
            if done.returncode != 0:
                failed = f"`churn {step[0]}` failed: {(done.stdout + done.stderr).strip().splitlines()[-1]}"
                break
        seconds = time.perf_counter() - start
        if failed:
            rows.append({"scenario": name, "churn AUC model / best baseline": failed})
        else:
            report = json.loads(next((folder / "outputs" / "backtest").glob("*/report.json")).read_text())
            raw[name] = report
            rows.append(_row(name, report))
        print(f"{name}: {seconds:.0f} s", flush=True)
    columns = list(dict.fromkeys(c for r in rows for c in r))
    print(f"\n{args.customers:,} customers per scenario, seed {args.seed}, every setting at its default; "
          f"command: {' '.join(sys.argv)}")
    print("targets: churn AUC above every baseline; ECE <= 0.02 (default) / 0.03; |CLTV total error| <= 10%; "
          "next-order model beats every baseline by >= 10%; ✗ = target missed\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(" --- " for _ in columns) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))


if __name__ == "__main__":
    main()
