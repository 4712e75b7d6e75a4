"""Reference pages generated from the code, so that the documentation cannot drift from what the code accepts.

:func:`config_markdown` renders ``docs/configuration.md`` from :class:`common.config.PipelineConfig`: every section
and key with its type, default and ``Field`` description, in the order the model declares them. It is pure and
deterministic (no clock, no files read). The data contract's tables are rendered by
:func:`features.contract.contract_markdown` instead: ``common`` may not import ``features``.

Regenerate the pages after changing the configuration model::

    .venv/bin/python -m common.reference > docs/configuration.md     # print the page
    .venv/bin/python -m common.reference --write                     # or write every generated page into docs/
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from common import config

ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = ROOT / "docs"
REGENERATE = ".venv/bin/python -m common.reference > docs/configuration.md"


def _rst_to_markdown(text: str) -> str:
    return inspect.cleandoc(text).replace("``", "`")


def _doc(model: type[BaseModel]) -> str:
    """The class's own docstring (not an inherited one), as Markdown."""
    doc = model.__dict__.get("__doc__")
    return _rst_to_markdown(doc) if doc else ""


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _mapping_of_models(annotation: Any) -> type[BaseModel] | None:
    """``V`` when ``annotation`` is ``dict[str, V]`` with ``V`` a model (a section per key, such as ``tables``)."""
    if typing.get_origin(annotation) is dict:
        value = typing.get_args(annotation)[1]
        if _is_model(value):
            return value
    return None


_NAMES = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path", dt.date: "date (YYYY-MM-DD)"}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"mapping: {_type_name(key)} -> {_type_name(value)}"
    if _is_model(annotation):
        return annotation.__name__
    return _NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))  # pydantic's Field(gt=..., ...) metadata


def _constraints(field: FieldInfo) -> str:
    found = [f"{sign} {getattr(item, attr)}" for item in field.metadata for attr, sign in _BOUNDS
             if getattr(item, attr, None) is not None]
    return ", ".join(found)


def _plain(value: Any) -> Any:
    """``value`` as plain YAML data (models without their unset keys, paths and dates as text)."""
    if isinstance(value, BaseModel):
        return {k: _plain(v) for k, v in value if v is not None}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (Path, dt.date)):
        return str(value)
    return value


def _yaml_inline(value: Any) -> str:
    """``value`` as it would be written in the YAML file, on one line."""
    text = yaml.safe_dump([_plain(value)], default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text[1:-1]


def _default(field: FieldInfo, parent_default: BaseModel | None, name: str) -> str:
    if parent_default is not None:
        return f"`{_yaml_inline(getattr(parent_default, name))}`"
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return f"`{_yaml_inline(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _sections(model: type[BaseModel], prefix: str, default: BaseModel | None, required: bool
              ) -> list[tuple[str, type[BaseModel], BaseModel | None, bool]]:
    """Depth-first ``(dotted name, model, default instance, required)`` of ``model`` and its nested sections."""
    found = [(prefix, model, default, required)]
    for name, field in model.model_fields.items():
        dotted = f"{prefix}.{name}" if prefix else name
        if _is_model(field.annotation):
            sub_default = getattr(default, name) if default is not None else (
                None if field.is_required() else field.get_default(call_default_factory=True))
            found += _sections(field.annotation, dotted, sub_default, field.is_required())
        elif (value_model := _mapping_of_models(field.annotation)) is not None:
            found += _sections(value_model, f"{dotted}.<name>", None, False)
    return found


def _key_rows(model: type[BaseModel], default: BaseModel | None) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            continue  # a section of its own
        kind = _type_name(field.annotation)
        bounds = _constraints(field)
        if (value_model := _mapping_of_models(field.annotation)) is not None:
            kind = f"mapping: name -> `{name}.<name>` section"
        description = field.description or ""
        rows.append(f"| `{name}` | {_cell(kind + (f', {bounds}' if bounds else ''))} | "
                    f"{_cell(_default(field, default, name))} | {_cell(_rst_to_markdown(description))} |")
    return rows


def config_markdown() -> str:
    """``docs/configuration.md``: every section and key of :class:`common.config.PipelineConfig`.

    Each section is a heading with its dotted name (``models``, ``tables.<name>.source``), the section class's
    docstring, and a table of its keys: type (with bounds), default (as written in YAML; "required" when there
    is none) and the ``Field`` description. Nested sections follow their parent, in declaration order.
    """
    default_file = f"configs/{Path(config.DEFAULT_CONFIG).name}"  # the shipped file, wherever it is installed
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated from common/config.py by `{REGENERATE}`; edit the model's Field descriptions, "
        "not this file (tests/test_docs.py checks that they agree). -->",
        "",
        _rst_to_markdown(config.__doc__ or ""),
        "",
        f"The file read is `{default_file}` unless `--config PATH` or the `{config.CONFIG_ENV}` environment "
        "variable names another. Keys are written as in the YAML file: `models.seed` is `seed:` under `models:`.",
        "",
    ]
    for dotted, model, default, required in _sections(config.PipelineConfig, "", None, True):
        rows = _key_rows(model, default)
        title = f"`{dotted}`" if dotted else "Top level"
        if dotted.endswith(".<name>") and dotted.count(".") == 1:
            names = ", ".join(f"`{n}`" for n in config.TABLE_NAMES)
            intro = f"`<name>` is one of {names}; `transactions` is required."
        else:
            intro = ""
        lines += [f"## {title}" + (" (required)" if required and dotted else ""), ""]
        for paragraph in (_doc(model), intro):
            if paragraph:
                lines += [paragraph, ""]
        if rows:
            lines += ["| key | type | default | description |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


PAGES: dict[str, Callable[[], str]] = {"configuration.md": config_markdown}


def main(argv: list[str] | None = None) -> None:
    """Print ``docs/configuration.md``, or with ``--write`` write every generated page into ``docs/``."""
    parser = argparse.ArgumentParser(prog="python -m common.reference", description=main.__doc__)
    parser.add_argument("--write", nargs="?", const=str(DOCS_DIR), metavar="DIR",
                        help=f"write {', '.join(PAGES)} into DIR (default: docs/)")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(config_markdown())
        return
    folder = Path(args.write)
    folder.mkdir(parents=True, exist_ok=True)
    for name, render in PAGES.items():
        (folder / name).write_text(render(), encoding="utf-8")
        print(folder / name)


if __name__ == "__main__":
    main()
