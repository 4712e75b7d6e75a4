"""Targeting by hand: tiers, first-match playbooks, consent, the budget, and a reproducible control group."""

from __future__ import annotations

import pandas as pd
import pytest

from common.errors import ConfigError
from serving.targeting import (DEFAULT_PLAYBOOKS, Condition, Playbook, assign_playbooks, campaign_summary,
                               in_control, load_playbooks, risk_tiers, select)


def test_risk_tiers_take_the_highest_threshold_reached():
    p = pd.Series([0.05, 0.3, 0.59, 0.6, 0.99])
    assert risk_tiers(p, {"high": 0.6, "medium": 0.3}).tolist() == ["low", "medium", "medium", "high", "high"]


def test_the_first_matching_playbook_wins():
    books = [Playbook(name="call", list="at_risk", action="Call", cost_per_contact=40, success_rate=0.3,
                      when=[Condition(column="predicted_cltv", op=">=", value=2000),
                            Condition(column="nps_group", op="in", value=["detractor"])]),
             Playbook(name="recovery", list="at_risk", action="Fix it", cost_per_contact=15, success_rate=0.25,
                      when=[Condition(column="open_tickets", op=">=", value=1)]),
             Playbook(name="email", list="at_risk", action="E-mail", cost_per_contact=0.2, success_rate=0.03)]
    frame = pd.DataFrame({"predicted_cltv": [5000, 5000, 100, 100], "nps_group": ["detractor", None, None, "x"],
                          "open_tickets": [3, 1, 0, None]})
    assert assign_playbooks(frame, books)["playbook"].tolist() == ["call", "recovery", "email", "email"]
    # a feature this data does not have (issue 17: shipped playbooks on a transactions-only config): never holds
    assert not Condition(column="nope", op=">", value=1).mask(frame).any()


def _candidates() -> pd.DataFrame:
    # value_at_risk x success_rate - cost: A 1000*0.3-40=260, B 200*0.25-15=35, C 50*0.03-0.2=1.3, D 5*0.03-0.2<0
    return pd.DataFrame({"customer_id": ["A", "B", "C", "D", "E"], "value_at_risk": [1000.0, 200.0, 50.0, 5.0, 900.0],
                         "success_rate": [0.3, 0.25, 0.03, 0.03, 0.3], "cost_per_contact": [40.0, 15.0, 0.2, 0.2, 40.0],
                         "marketing_consent": [True, True, True, True, False]})


def test_budget_picks_the_best_net_value_per_cost_and_consent_is_never_overridden():
    chosen = select(_candidates(), "at_risk", budget=None, control_share=0.0, campaign_id="c")
    assert sorted(chosen["customer_id"]) == ["A", "B", "C"]  # D loses money; E has no consent
    assert chosen.set_index("customer_id")["expected_net_value"].round(6).to_dict() == {"A": 260.0, "B": 35.0,
                                                                                        "C": 1.3}
    # ratios: C 6.5, A 6.5, B 2.33 -> C (0.2), A (40) fit in 41; B (15) does not
    tight = select(_candidates(), "at_risk", budget=41.0, control_share=0.0, campaign_id="c")
    assert sorted(tight["customer_id"]) == ["A", "C"] and set(tight["contact_group"]) == {"treatment"}
    summary = campaign_summary(tight, "at_risk", candidates=5, without_consent=1)
    assert summary["cost"] == pytest.approx(40.2) and summary["expected_saved_value"] == pytest.approx(301.5)
    assert summary["expected_net_return"] == pytest.approx(261.3) and summary["held_back_no_consent"] == 1


def test_the_control_group_is_reproducible_and_about_the_asked_share():
    ids = pd.Series([f"C{i:07d}" for i in range(20_000)])
    first = in_control(ids, "retention-at_risk-2026-11-01", 0.1)
    assert (first == in_control(ids, "retention-at_risk-2026-11-01", 0.1)).all()
    assert 0.09 < first.mean() < 0.11
    other = in_control(ids, "retention-at_risk-2026-12-01", 0.1)  # another campaign, another draw
    assert 0.005 < (first & other).mean() < 0.015


def test_control_customers_are_withheld_and_cost_nothing():
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(200)], "value_at_risk": 100.0, "success_rate": 0.5,
                          "cost_per_contact": 1.0, "marketing_consent": True})
    chosen = select(frame, "at_risk", budget=50.0, control_share=0.2, campaign_id="camp")
    treated = chosen[chosen["contact_group"] == "treatment"]
    assert len(treated) == 50 and campaign_summary(chosen, "at_risk", 200, 0)["cost"] == 50.0
    assert (chosen["contact_group"] == "control").sum() > 0 and set(chosen["campaign_id"]) == {"camp"}
    control_ids = set(chosen.loc[chosen["contact_group"] == "control", "customer_id"])
    assert control_ids == {c for c, flag in zip(frame["customer_id"], in_control(frame["customer_id"], "camp", 0.2))
                           if flag} & set(chosen["customer_id"])


def test_shipped_playbooks_load_and_a_list_without_a_catch_all_is_refused(tmp_path):
    books = load_playbooks(DEFAULT_PLAYBOOKS)
    assert books.for_list("at_risk")[-1].when == [] and books.for_list("winback")[-1].when == []
    bad = tmp_path / "playbooks.yaml"
    bad.write_text("playbooks:\n  - {name: a, list: at_risk, action: x, cost_per_contact: 1, success_rate: 0.1,"
                   " when: [{column: x, op: '>', value: 1}]}\n  - {name: b, list: winback, action: y,"
                   " cost_per_contact: 1, success_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="the last at_risk playbook must have no conditions"):
        load_playbooks(bad)


def test_budgets_and_playbooks_name_only_declared_lists():
    from common.errors import ConfigError
    from serving.targeting import Playbooks, check_budgets

    check_budgets({"at_risk": 100.0, "winback": None})
    with pytest.raises(ConfigError, match=r"targeting.budgets names unknown list\(s\) \['vip'\]; the lists are "
                                          r"\['at_risk', 'winback'\]"):
        check_budgets({"at_risk": 100.0, "vip": 5.0})
    with pytest.raises(ValueError, match=r"playbooks for unknown list\(s\) \['vip'\]"):
        Playbooks(playbooks=[{"name": "x", "list": "vip", "action": "a", "cost_per_contact": 1, "success_rate": 0.1}])
