"""Jobs that need no flow: contact fields joined only when asked, with a clear error when there are none."""

from __future__ import annotations

import pandas as pd
import pytest

from common.config import load_config
from common.errors import DataError
from pipelines import jobs
from tests.conftest import write_config


def test_contact_fields_are_joined_only_at_publish_time(tmp_path):
    config = write_config(tmp_path, {"transactions": {"source": {"path": "t.csv"}}},
                          outputs={"include_contact": True})
    cfg = load_config(config)
    lists = {"at_risk": pd.DataFrame({"customer_id": ["C1", "C2"], "rank": [1, 2]})}
    with pytest.raises(DataError, match="include_contact is true but .*customer_contacts.parquet is missing"):
        jobs.with_contacts(cfg, lists)
    cfg.validated_dir.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C2", "C1"], "email": ["b@x.org", "a@x.org"]}).to_parquet(
        cfg.validated_dir / "customer_contacts.parquet")
    joined = jobs.with_contacts(cfg, lists)["at_risk"]
    assert joined.to_dict("list") == {"customer_id": ["C1", "C2"], "rank": [1, 2], "email": ["a@x.org", "b@x.org"]}


def test_a_scoring_date_after_the_day_after_the_data_is_refused_unless_forced(tmp_path):
    import datetime as dt

    from common.errors import ChurnError

    last_day = dt.date(2026, 10, 31)

    def cutoff(**scoring) -> dt.date:
        config = write_config(tmp_path, {"transactions": {"source": {"path": "t.csv"}}}, scoring=scoring)
        return jobs.scoring_cutoff(load_config(config), last_day)

    assert cutoff() == dt.date(2026, 11, 1)  # the default: the latest day counts
    assert cutoff(as_of="2026-11-01") == dt.date(2026, 11, 1)  # the boundary is allowed
    assert cutoff(as_of="2026-06-01") == dt.date(2026, 6, 1)  # earlier dates (a re-run of the past) too
    with pytest.raises(ChurnError, match=r"cannot score as of 2026-11-02: the data ends on 2026-10-31, so the latest "
                                         r"as-of date it supports is 2026-11-01 \(1 days earlier\).*--force-as-of"):
        cutoff(as_of="2026-11-02")
    assert cutoff(as_of="2030-01-01", allow_as_of_after_data=True) == dt.date(2030, 1, 1)
