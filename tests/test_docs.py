"""docs/ says what the code does: the generated pages equal their generators, the contract and the feature list
match the code, and every link of README.md and docs/ leads somewhere."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from common.reference import REGENERATE, config_markdown
from features.contract import contract_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "notebooks" / "README.md", *sorted(DOCS.glob("*.md"))]


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_configuration_page_is_generated_from_the_config_model():
    assert _read(DOCS / "configuration.md") == config_markdown(), (
        f"docs/configuration.md is out of date with common/config.py; regenerate it: {REGENERATE}")


def test_config_markdown_lists_every_key_of_every_section():
    from pydantic import BaseModel

    from common.config import ModelsConfig, PipelineConfig, ScheduleEntry, SourceConfig, TargetingConfig

    text = config_markdown()
    sections = [("## Top level", PipelineConfig), ("## `models`", ModelsConfig), ("## `targeting`", TargetingConfig),
                ("## `tables.<name>.source` (required)", SourceConfig), ("## `schedule.score`", ScheduleEntry)]
    for heading, model in sections:
        section = text[text.index(heading + "\n"):].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                assert f"## `{name}`" in text, f"section {name} missing"  # a section of its own
            else:
                assert f"| `{name}` |" in section, f"{name} missing under {heading}"
    # defaults as written in YAML, taken from the default instance (the score deployment's cron, not the class's)
    assert "| `cron` | text or null | `0 6 * * *` |" in text
    assert "| `threads` | integer, > 0 | `2` | LightGBM threads" in text
    assert "| `risk_tiers` | mapping: text -> number | `{high: 0.6, medium: 0.3}` |" in text


def test_contract_page_embeds_the_data_contract():
    assert contract_markdown() in _read(DOCS / "contract.md"), (
        "docs/contract.md differs from features/contract.py: paste the output of "
        "`.venv/bin/python -c \"from features.contract import contract_markdown; print(contract_markdown())\"`")


def test_every_snapshot_column_is_documented_in_docs_features(validated_dir):
    from common.config import HorizonsConfig
    from features.snapshots import build_snapshots, open_sources

    documented = set(re.findall(r"`([A-Za-z_0-9<>]+)`", _read(DOCS / "features.md")))
    snap = build_snapshots(open_sources(validated_dir), [dt.date(2026, 3, 1)], HorizonsConfig(), with_labels=True)
    for column in snap.columns:
        name = re.sub(r"^channel_share_.*", "channel_share_<channel>", column)
        assert name in documented, f"{column} is not documented in docs/features.md"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, inline code marks and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", _read(path), flags=re.S)  # '#' lines inside code blocks are no headings
    return {_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", _read(page), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):  # http(s), mailto: outside the repository
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT) if ROOT in path.parents else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_readme_links_every_docs_page():
    readme = _read(ROOT / "README.md")
    missing = [p.name for p in DOCS.glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not missing, f"README.md does not link {missing}"
