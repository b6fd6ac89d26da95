"""named config for the secondaries: which signers each pulls from (failover or split), AXFR only.

Every name and path that goes into the named config is checked here first, whatever checked it before
(zone names come back from the nodes): a zone name or a key name may only be a plain DNS name, a path
may hold no quote, backslash or control character, and a name in a comment is a plain word. So nothing
a node or a config says can close a string or a statement and add its own; a bad one is refused in one
line naming it, before anything is written.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from duo_ods.config.model import KEY_NAME_RE, NAME_RE
from duo_ods.config.resolve import Duo, zone_file_name
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import RenderError, ZoneFileError
from duo_ods.process import run
from duo_ods.relay.catalog import catalog_name
from duo_ods.render.engine import render

# What could end a quoted string in named.conf, escape in it, or start a new line.
_UNSAFE_IN_STRING = re.compile(r'["\\\x00-\x1f\x7f]')
MODES = ("failover", "split")


def _refused(kind: str, value: str, why: str) -> RenderError:
    return RenderError(f"{kind} {value!r} cannot go into a named config: {why}")


def named_zone(zone: str) -> str:
    """A zone name for `zone "NAME"`: the normalised name, or RenderError."""
    try:
        name = normalize_zone_name(zone)
    except ZoneFileError as exc:
        raise _refused("zone name", zone, "not a plain DNS name") from exc
    return name


def named_key_name(name: str) -> str:
    if not KEY_NAME_RE.fullmatch(name):
        raise _refused("key name", name, "not a plain DNS name (letters, digits, '-', '_' and dots)")
    return name


def named_path(kind: str, path: Path | str) -> str:
    text = str(path)
    if _UNSAFE_IN_STRING.search(text):
        raise _refused(kind, text, "it holds a quote, a backslash or a control character")
    return text


def named_word(kind: str, word: str) -> str:
    """A node or secondary name (it also lands in comments): what the config allows, nothing else."""
    if not NAME_RE.fullmatch(word):
        raise _refused(kind, word, "not a name of lowercase letters, digits and '-'")
    return word


def named_address(kind: str, address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise _refused(kind, address, "not an IP address") from None


def named_mode(mode: str) -> str:
    if mode not in MODES:
        raise _refused("mode", mode, f"not one of {', '.join(MODES)}")
    return mode


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


def relays_for(duo: Duo, secondary: str, mode: str) -> list[ServerView]:
    """The relays a secondary pulls from, in order: the relay of each of its signer nodes."""
    return [
        ServerView(named_word("node name", n),
                   named_address(f"node {n} relay address", duo.nodes[n].relay_address),
                   int(duo.nodes[n].relay_port))
        for n in primaries_for(duo, secondary, mode)
    ]  # fmt: skip


@dataclass(frozen=True)
class CatalogView:
    name: str
    file: str
    servers: list[ServerView]


def catalogs_for(duo: Duo, secondary: str, mode: str) -> list[CatalogView]:
    """The catalogs a secondary consumes, each from the relays that serve it (failover: one catalog
    from every relay in order; split: its own signer's)."""
    by_name: dict[str, list[ServerView]] = {}
    nodes = primaries_for(duo, secondary, mode)
    for node, server in zip(nodes, relays_for(duo, secondary, mode), strict=True):
        by_name.setdefault(named_zone(catalog_name(duo, node)), []).append(server)
    return [CatalogView(name, named_path(f"catalog {name} file", f"zones/{name}.db"), servers)
            for name, servers in sorted(by_name.items())]  # fmt: skip


def render_zones(duo: Duo, secondary: str, mode: str, zones: list[str]) -> str:
    """The zone statements of one secondary, every zone listed (no catalog); RenderError names the
    first name that is not safe there."""
    names = sorted({named_zone(z) for z in zones})
    views = [ZoneView(z, named_path(f"zone {z} file", f"zones/{zone_file_name(z)}.db")) for z in names]
    return render(
        "named-zones.conf.j2",
        {"secondary": named_word("secondary name", secondary), "mode": named_mode(mode),
         "servers": relays_for(duo, secondary, mode), "zones": views,
         "key_name": named_key_name(duo.config.transfer.key_name)},
    )  # fmt: skip


def render_catalog_zones(duo: Duo, secondary: str, mode: str) -> str:
    """The server and catalog zone statements of one secondary (top level of named.conf)."""
    return render(
        "named-catalog.conf.j2",
        {"secondary": named_word("secondary name", secondary), "mode": named_mode(mode),
         "servers": relays_for(duo, secondary, mode), "catalogs": catalogs_for(duo, secondary, mode),
         "key_name": named_key_name(duo.config.transfer.key_name)},
    )  # fmt: skip


def render_catalog_options(duo: Duo, secondary: str, mode: str, zone_directory: str) -> str:
    """What goes inside the secondary's options { }: catalog-zones, AXFR only, who may notify."""
    return render(
        "named-options.conf.j2",
        {"secondary": named_word("secondary name", secondary), "mode": named_mode(mode),
         "servers": relays_for(duo, secondary, mode), "catalogs": catalogs_for(duo, secondary, mode),
         "zone_directory": named_path("catalog member folder", zone_directory),
         "key_name": named_key_name(duo.config.transfer.key_name)},
    )  # fmt: skip


def render_named_conf(
    duo: Duo, secondary: str, directory: Path, key_file: Path, zones_file: Path, *, options_file: Path
) -> str:
    config = duo.secondary(secondary)
    t = duo.config.transfer
    return render(
        "named.conf.j2",
        {
            "secondary": named_word("secondary name", secondary),
            "dir": named_path(f"secondary {secondary} folder", directory),
            "address": named_address(f"secondary {secondary} address", config.address),
            "port": int(config.port), "key_name": named_key_name(t.key_name),
            "key_file": named_path("transfer key file", key_file),
            "zones_file": named_path(f"secondary {secondary} zones file", zones_file),
            "options_file": named_path(f"secondary {secondary} options file", options_file),
            "min_refresh": int(t.min_refresh), "max_refresh": int(t.max_refresh),
            "min_retry": int(t.min_retry), "max_retry": int(t.max_retry),
        },
    )  # fmt: skip


def check_named_conf(path: Path) -> None:
    """named-checkconf, the owner's checker, on a complete named.conf."""
    proc = run(["named-checkconf", str(path)], check=False, timeout=30)
    if proc.returncode != 0:
        detail = (proc.stdout + proc.stderr).strip().splitlines()
        raise RenderError(f"{path}: named-checkconf: {detail[0] if detail else 'failed'}")


def check_zones_snippet(duo: Duo, snippet: str, key_file: Path, options: str = "") -> None:
    """Check a zone snippet (and an options fragment) as named would read them: inside a minimal
    named.conf with the key."""
    with tempfile.TemporaryDirectory() as tmp:
        zones = Path(tmp) / "zones.conf"
        zones.write_text(snippet)
        opts = Path(tmp) / "options.conf"
        opts.write_text(options)
        conf = Path(tmp) / "named.conf"
        key = named_path("transfer key file", key_file)
        conf.write_text(
            f'include "{key}";\noptions {{ include "{named_path("options file", opts)}"; }};\n'
            f'include "{named_path("zones file", zones)}";\n'
        )
        check_named_conf(conf)
