"""README.md documents the data contract exactly as the code enforces it, and the two set-up commands."""

from pathlib import Path

from features.contract import contract_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_embeds_the_data_contract():
    assert contract_markdown() in README.read_text(encoding="utf-8")


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
