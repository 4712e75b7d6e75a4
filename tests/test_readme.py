"""README.md documents the data contract exactly as the code enforces it, and the two set-up commands."""

from pathlib import Path

from features.contract import contract_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_embeds_the_data_contract():
    assert contract_markdown() in README.read_text(encoding="utf-8")


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text


def test_every_snapshot_column_is_documented_in_the_readme(validated_dir):
    import datetime as dt
    import re

    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, open_sources

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Point-in-time features"):text.index("## Layout")]
    documented = set(re.findall(r"`([A-Za-z_0-9<>]+)`", section))
    snap = build_snapshots(open_sources(validated_dir), [dt.date(2026, 3, 1)], HorizonsConfig(), with_labels=True)
    for column in snap.columns:
        name = re.sub(r"^channel_share_.*", "channel_share_<channel>", column)
        assert name in documented, f"{column} is not documented in README.md"
