"""Read a TOML config file and report every problem at once, each with its place."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from duo_ods.config.model import DuoConfig
from duo_ods.config.resolve import Duo, resolve
from duo_ods.errors import ConfigError


def format_validation_error(exc: ValidationError) -> list[str]:
    """pydantic errors as '[nodes.b.address] not an IP address' lines."""
    lines = []
    for err in exc.errors():
        place = ".".join(str(part) for part in err["loc"]) or "/"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"[{place}] {msg}")
    return lines


def parse_config(text: str, source: str) -> DuoConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    try:
        return DuoConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from exc


def load_config(path: Path) -> Duo:
    """Load, validate and resolve a config file. Relative paths are relative to its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    config = parse_config(text, str(path))
    return resolve(config, path.resolve())
