"""Which parent a zone has (`[parents."ZONE"]`, else `[parents."*"]`), with its paths made absolute."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from duo_ods.config.durations import parse_duration
from duo_ods.config.model import ParentConfig, split_agent
from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name


@dataclass(frozen=True)
class Parent:
    zone: str  # the child zone
    parent_zone: str
    agents: list[tuple[str, int]]
    submit_command: list[str]
    update_server: tuple[str, int] | None
    tsig_key_file: Path | None
    ds_ttl: int  # the TTL an UPDATE gives the DS: the policy's, which the enforcer waits out

    @property
    def can_submit(self) -> bool:
        return bool(self.submit_command) or self.update_server is not None


def parent_zone_of(zone: str) -> str:
    """The zone without its first label ("example.test" -> "test", "test" -> ".")."""
    _first, _dot, rest = zone.rstrip(".").partition(".")
    return rest or "."


def parent_for(duo: Duo, zone: str) -> Parent | None:
    zone = normalize_zone_name(zone)
    parents = {normalize_zone_name(k) if k != "*" else "*": v for k, v in duo.config.parents.items()}
    config: ParentConfig | None = parents.get(zone) or parents.get("*")
    if config is None:
        return None
    here = duo.config_path.parent
    key = Path(config.tsig_key_file).expanduser() if config.tsig_key_file else None
    return Parent(
        zone=zone,
        parent_zone=normalize_zone_name(config.parent_zone) if config.parent_zone else parent_zone_of(zone),
        agents=[split_agent(a) for a in config.agents],
        submit_command=list(config.submit_command),
        update_server=split_agent(config.update_server) if config.update_server else None,
        tsig_key_file=(key if key.is_absolute() else (here / key).resolve()) if key else None,
        ds_ttl=parse_duration(duo.config.policy.ds_ttl),
    )
