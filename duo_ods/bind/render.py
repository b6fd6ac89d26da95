"""named config for the secondaries: which signers each pulls from (failover or split), AXFR only."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from duo_ods.config.resolve import Duo, zone_file_name
from duo_ods.errors import RenderError
from duo_ods.proc import run
from duo_ods.render.engine import render


@dataclass(frozen=True)
class ServerView:
    node: str
    address: str
    port: int


@dataclass(frozen=True)
class ZoneView:
    name: str
    file: str


def primaries_for(duo: Duo, secondary: str, mode: str) -> list[str]:
    """The nodes a secondary pulls from: its configured list, else every node in order (failover)
    or one node per secondary, round robin (split: each set of name servers from its own signer)."""
    config = duo.secondary(secondary)
    if config.primaries:
        return list(config.primaries)
    nodes = list(duo.nodes)
    index = duo.config.secondaries.index(config)
    return nodes if mode == "failover" else [nodes[index % len(nodes)]]


def render_zones(duo: Duo, secondary: str, mode: str, zones: list[str]) -> str:
    servers = [
        ServerView(n, duo.nodes[n].address, duo.nodes[n].port) for n in primaries_for(duo, secondary, mode)
    ]
    views = [ZoneView(z, f"zones/{zone_file_name(z)}.db") for z in sorted(zones)]
    return render(
        "named-zones.conf.j2",
        {"secondary": secondary, "mode": mode, "servers": servers, "zones": views,
         "key_name": duo.config.transfer.key_name, "axfr_tsig": duo.config.transfer.axfr_tsig},
    )  # fmt: skip


def render_named_conf(duo: Duo, secondary: str, directory: Path, key_file: Path, zones_file: Path) -> str:
    config = duo.secondary(secondary)
    t = duo.config.transfer
    return render(
        "named.conf.j2",
        {
            "secondary": secondary, "dir": str(directory), "address": config.address, "port": config.port,
            "key_name": t.key_name, "key_file": str(key_file), "zones_file": str(zones_file),
            "min_refresh": t.min_refresh, "max_refresh": t.max_refresh,
            "min_retry": t.min_retry, "max_retry": t.max_retry,
        },
    )  # fmt: skip


def check_named_conf(path: Path) -> None:
    """named-checkconf, the owner's checker, on a complete named.conf."""
    proc = run(["named-checkconf", str(path)], check=False, timeout=30)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip().splitlines()
        raise RenderError(f"{path}: named-checkconf: {detail[0] if detail else 'failed'}")


def check_zones_snippet(duo: Duo, snippet: str, key_file: Path) -> None:
    """Check a zone snippet as named would read it: inside a minimal named.conf with the key."""
    with tempfile.TemporaryDirectory() as tmp:
        zones = Path(tmp) / "zones.conf"
        zones.write_text(snippet)
        conf = Path(tmp) / "named.conf"
        conf.write_text(f'include "{key_file}";\ninclude "{zones}";\n')
        check_named_conf(conf)
