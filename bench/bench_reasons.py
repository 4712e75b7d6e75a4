"""The whole-list check of the reasons (issue 18): every scenario through `churn run`, the defect counts of each
published list, and the first rows of each list with every reason, read as a retention manager reads them.

Usage: python bench/bench_reasons.py [--scenarios default,transactions-only] [--customers 5000] [--seed 7]
                                     [--rows 10] [--languages en,de,he] [--work DIR]

For each scenario (all by default) in ``WORK/<scenario>/``: ``churn generate --scenario``, a config naming only
its tables (as ``bench/bench_scenarios.py`` writes it) plus ``targeting.require_consent: false`` (so that the
scenarios without consent data publish lists too), ``churn validate`` and ``churn run``. The counts are those
the scoring run computed over every published row (``reason_audit`` in the list's ``run.json``,
:func:`serving.explain.audit_reasons`): reasons that contradict the score, reasons that are not facts (trivia or
another model's output), the same fact twice in a row, "0 orders", negative durations, "1 orders", "0%", rows not
all in their language. Every count should be 0. Then ``--rows`` rows of each list: rank, customer, country,
language, score, tier, the reasons, the action and the offer; with ``--languages``, ``--rows`` rows of each of
those languages (of the first scenario that publishes them). Each command's wall time, CPU seconds, peak RSS and
the 1-minute load before and after (read from its own process: ``bench/measure.py``) are printed per scenario and
written to its ``commands.log``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import measure  # noqa: E402
from bench_scenarios import churn, first_error_line, write_config  # noqa: E402

from serving.explain import AUDIT_COUNTS  # noqa: E402
from serving.lists import LISTS  # noqa: E402


def run_scenario(name: str, work: Path, customers: int, seed: int) -> dict:
    """Generate, validate and run one scenario; returns its lists (or ``"error"``) and ``"spent"``, the figures of
    each command."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    spent: list[measure.Figures] = []
    with open(folder / "commands.log", "w") as log:
        steps = [["generate", "--scenario", name, "--customers", str(customers), "--seed", str(seed), "--out",
                  str(folder / "raw")]]
        for step in steps:
            done = churn(step, log, spent)
            if done.returncode != 0:
                return {"error": f"churn {step[0]}: {first_error_line(done)}", "spent": spent}
        config = write_config(folder, name, {})
        data = yaml.safe_load(config.read_text())
        # scenarios without consent data publish nobody under require_consent: read every list anyway
        data["targeting"] = {"require_consent": False}
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        for command in ("validate", "run"):
            done = churn([command, "--config", str(config)], log, spent)
            if done.returncode != 0:
                return {"error": f"churn {command}: {first_error_line(done)}", "spent": spent}
    out: dict = {"spent": spent, "lists": {}}
    for spec in LISTS:
        latest = sorted((folder / "outputs" / spec.name).glob("as_of=*"))
        if not latest:
            out["lists"][spec.name] = {"error": "not published"}
            continue
        meta = json.loads((latest[-1] / "run.json").read_text())
        frame = pd.read_parquet(next(latest[-1].glob("*.parquet")))
        out["lists"][spec.name] = {"rows": len(frame), "audit": meta.get("reason_audit", {}).get(spec.name),
                                   "frame": frame, "probability": spec.probability}
    return out


def main() -> None:
    from features.synthetic.scenarios import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--languages", default=None, help="comma-separated CLDR codes: rows of each language")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench-reasons-"))).resolve()
    command = measure.started()
    print(f"work folder: {work}\n", flush=True)
    results = {}
    with measure.measured("every scenario (this process and its commands)") as total:
        for name in [n.strip() for n in args.scenarios.split(",") if n.strip()]:
            results[name] = run_scenario(name, work, args.customers, args.seed)
            result = results[name]
            print(measure.combined(name, result["spent"]).line()
                  + (f"\n    FAILED: {result['error']}" if "error" in result else ""), flush=True)
            for step in result["spent"]:
                print(f"    {step.line()}", flush=True)

    header = ["scenario", "list", "rows", *AUDIT_COUNTS]
    print("\n| " + " | ".join(header) + " |\n|" + "|".join(" --- " for _ in header) + "|")
    for name, result in results.items():
        if "error" in result:
            print(f"| {name} | FAILED: {result['error']} |")
            continue
        for list_name, got in result["lists"].items():
            audit = got.get("audit") or {}
            print(f"| {name} | {list_name} | {got.get('rows', '-')} | "
                  + " | ".join(str(audit.get(c, "-")) for c in AUDIT_COUNTS) + " |")
    languages = [code.strip() for code in (args.languages or "").split(",") if code.strip()]
    shown: set = set()
    for name, result in results.items():
        for list_name, got in result.get("lists", {}).items():
            if "frame" not in got:
                continue
            frame = got["frame"]
            if not languages:
                print(f"\n{name} / {list_name}: first {args.rows} of {len(frame):,} rows")
                _print_rows(frame.head(args.rows), got["probability"])
                continue
            for code in languages:
                rows = frame[frame["language"] == code] if "language" in frame.columns else frame.iloc[:0]
                if (list_name, code) in shown or rows.empty:
                    continue
                shown.add((list_name, code))
                print(f"\n{name} / {list_name} / {code}: first {args.rows} of {len(rows):,} rows in that language")
                _print_rows(rows.head(args.rows), got["probability"])
    measure.finished(total, command)


def _print_rows(frame: pd.DataFrame, probability: str) -> None:
    for _, row in frame.iterrows():
        print(f"  #{row['rank']} {row['customer_id']} {row.get('country')} {row.get('language', '')} "
              f"p={row[probability]:.3f} {row.get('risk_tier', '')} [{row.get('contact_group', '')}]")
        for c in ("reason_1", "reason_2", "reason_3"):
            if isinstance(row.get(c), str):
                print(f"      - {row[c]}")
        print(f"      action: {row.get('recommended_action')} | offer: {row.get('offer')}")


if __name__ == "__main__":
    main()
