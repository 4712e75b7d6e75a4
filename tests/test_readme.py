"""README.md is the five-minute page: short, with the two set-up commands (its links: tests/test_docs.py)."""

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text


def test_readme_is_read_in_five_minutes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move reference material into docs/"
