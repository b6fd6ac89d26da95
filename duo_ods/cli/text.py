"""Values as a person reads them: no Python reprs (None, True, {'a': 1}, ['x']) in text output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def human(value: Any) -> str:
    """One value for a line of text: None -> '-', True/False -> yes/no, lists and maps spelled out."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {human(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return ", ".join(human(v) for v in items) or "none"
    return str(value)


def field_lines(data: Mapping[str, Any]) -> str:
    """A reply as 'field: value' lines, each value as human() spells it."""
    return "\n".join(f"{k.replace('_', ' ')}: {human(v)}" for k, v in data.items())


def once(message: str) -> str:
    """'node b: node b: x' -> 'node b: x': a message whose own text names what the caller named."""
    return re.sub(r"^(node [^\s:]+: )\1+", r"\1", message)


def without_prefix(message: str, prefix: str) -> str:
    """The message without a prefix the caller prints itself (no 'node b: ... node b: ...')."""
    return message[len(prefix) :] if message.startswith(prefix) else message
