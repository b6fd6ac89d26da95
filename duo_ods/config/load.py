"""Read a TOML config file and report every problem at once, each with its place."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import ValidationError

from duo_ods.config.model import DuoConfig
from duo_ods.config.resolve import Duo, resolve
from duo_ods.config.trust import require_given_config_trusted, require_trusted_for
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


def module_settings(config: DuoConfig) -> list[str]:
    """The hsm_module settings the file itself makes (defaults are ods-duo's own, not the file's)."""
    named = [
        f"nodes.{n}.hsm_module" for n, node in config.nodes.items() if "hsm_module" in node.model_fields_set
    ]
    if "hsm_module" in config.backup.model_fields_set:
        named.append("backup.hsm_module")
    return named


def load_config(path: Path) -> Duo:
    """Load, validate and resolve a config file. Relative paths are relative to its folder.

    A file anyone may write is refused, and hsm_module is taken only from a file under the strict
    rule of duo_ods.config.trust (a config found without --config is checked before, in the CLI).
    """
    require_given_config_trusted(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    config = parse_config(text, str(path))
    require_trusted_for(path, module_settings(config))
    return resolve(config, path.resolve())
