"""The run summaries people read, written once for the CLI's tables and the flows' markdown artifacts: each
function returns rows (column -> text), and :func:`markdown` or the CLI's rich tables lay them out."""

from __future__ import annotations

INGEST_COLUMNS = ["table", "rows", "kept", "rejected", "reasons"]
TRAINING_COLUMNS = ["model", "version", "decision", "reason", "champion"]
CAMPAIGN_COLUMNS = ["list", "campaign", "treatment", "control", "no consent", "cost", "expected saved",
                    "expected net return"]


def ingest_row(name: str, report) -> dict[str, str]:
    """One table's validation: rows read, kept, rejected (with the share) and the rejection reasons."""
    reasons = ", ".join(f"{k}: {v:,}" for k, v in report.reasons.items()) or "-"
    return {"table": name, "rows": f"{report.rows_in:,}", "kept": f"{report.rows_ok:,}",
            "rejected": f"{report.rejected:,} ({report.rejected_share:.2%})", "reasons": reasons}


def scoring_rows(summary: dict) -> list[dict[str, str]]:
    """The headline numbers of a scoring run as (measure, value) rows."""
    versions = ", ".join(f"{k} v{v}" for k, v in summary["champion_versions"].items())
    rows = [
        ("as of", summary["as_of"]),
        ("customers scored", f"{summary['customers_scored']:,}"),
        ("active / lapsed", f"{summary['active_customers']:,} / {summary['lapsed_customers']:,}"),
        ("at risk (churn probability >= threshold)", f"{summary['at_risk_customers']:,}"),
        ("value at risk", _money(summary["value_at_risk"])),
        ("expected win-back value", _money(summary["expected_winback_value"])),
        ("champion versions", versions),
        ("run id", summary["run_id"]),
    ]
    defects = {f"{name}: {count:,} {what.replace('_', ' ')}" for name, counts in summary.get("reason_audit", {}).items()
               for what, count in counts.items() if count}
    if defects:  # the whole-list check of the reasons (serving.explain.audit_reasons) found something
        rows.insert(-1, ("reason defects (should be none)", "; ".join(sorted(defects))))
    skipped = summary.get("models_without_champion") or []
    if skipped:
        rows.insert(-1, ("models without a champion (stepped aside)", ", ".join(skipped)))
    return [{"measure": measure, "value": value} for measure, value in rows]


def _money(value: float | None) -> str:
    return "unknown (no CLTV model)" if value is None else f"{value:,.2f}"


def campaign_rows(summary: dict) -> list[dict[str, str]]:
    """One row per list's campaign."""
    return [{"list": name, "campaign": c["campaign_id"], "treatment": f"{c['treatment']:,}",
             "control": f"{c['control']:,}", "no consent": f"{c['held_back_no_consent']:,}",
             "cost": f"{c['cost']:,.2f}", "expected saved": f"{c['expected_saved_value']:,.2f}",
             "expected net return": f"{c['expected_net_return']:,.2f}"}
            for name, c in summary.get("campaigns", {}).items()]


def training_rows(result: dict) -> list[dict[str, str]]:
    """One row per model trained: version, decision and why, and the champion after the run."""
    return [{c: str(m.get(c, "")) for c in TRAINING_COLUMNS} for m in result.get("models", [])]


def backtest_markdown(report: dict) -> str:
    """The backtest's side-by-side table (each model's metrics next to its baselines and the oracle) as markdown,
    and one line per model that stepped aside."""
    from models.backtest import summary_rows
    from models.catalog import MODELS

    rows = summary_rows(report)
    columns = ["target", "metric", *(rows[0][2] if rows else {})]
    cells = [{"target": t, "metric": m, **{k: "-" if v is None else f"{v:.4f}" for k, v in values.items()}}
             for t, m, values in rows]
    skipped = [f"- {spec.name} stepped aside: {report[spec.section]['skipped']}" for spec in MODELS
               if "skipped" in report.get(spec.section, {})]
    return markdown(columns, cells) + ("\n\n" + "\n".join(skipped) if skipped else "")


def markdown(columns: list[str], rows: list[dict]) -> str:
    """``rows`` as a markdown table with ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def score_markdown(summary: dict) -> str:
    """The scoring summary as markdown (the flow's artifact)."""
    published = "\n".join(f"- {name}: `{path}`" for name, path in summary["published"].items()) or "- (dry run)"
    return (f"## Batch scoring\n\n{markdown(['measure', 'value'], scoring_rows(summary))}\n\n### Campaigns\n\n"
            f"{markdown(CAMPAIGN_COLUMNS, campaign_rows(summary))}\n\nPublished:\n{published}\n")
