"""Jinja2 rendering and atomic writes of generated files."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("duo_ods.templates", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("xml.j2",), default_for_string=False),
    )


def render(template: str, view: Any) -> str:
    """Render a template from a small computed object (a dataclass) or a mapping."""
    context = asdict(view) if is_dataclass(view) and not isinstance(view, type) else dict(view)
    return _environment().get_template(template).render(**context)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
