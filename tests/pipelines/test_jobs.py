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
