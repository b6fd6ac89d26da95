"""Render, validate and write one node's ODS configs.

All files are rendered and validated first and only then written, so a bad
config never replaces a working one.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from duo_ods.config.resolve import Duo, Node
from duo_ods.dns.tsig import TsigKey, read_tsig_key
from duo_ods.node.secrets import read_secret
from duo_ods.render.engine import render, write_atomic
from duo_ods.render.validate import check_kasp, check_ods_xml
from duo_ods.render.views import TsigView, addns_view, conf_view, kasp_view, zonelist_view


@dataclass(frozen=True)
class RenderedFile:
    path: Path
    text: str
    schema: str
    mode: int


def render_node_configs(
    duo: Duo, node: Node, zones: list[str], pin: str | None = None, key: TsigKey | None = None
) -> list[RenderedFile]:
    """The node's conf.xml, kasp.xml, zonelist.xml and addns.xml, validated against ODS's schemas.

    The PIN and the transfer key are read from their files unless given (a plan renders with the
    ones it is about to write)."""
    p = node.paths
    key = key or read_tsig_key(duo.tsig_key_path)
    pin = pin or read_secret(node.pin_file)
    tsig = TsigView(key.name, key.algorithm, key.secret)
    t = duo.config.transfer
    addns = addns_view(node, t.allow, tsig)
    files = [
        # conf.xml holds the token PIN (ODS reads it from there): owner-only.
        RenderedFile(p.conf_xml, render("conf.xml.j2", conf_view(node, pin)), "conf", 0o600),
        RenderedFile(p.kasp_xml, render("kasp.xml.j2", kasp_view(duo.config.policy)), "kasp", 0o644),
        RenderedFile(
            p.zonelist_xml,
            render("zonelist.xml.j2", zonelist_view(node, duo.config.policy.name, zones)),
            "zonelist",
            0o644,
        ),
        # addns.xml holds the TSIG secret: owner-only.
        RenderedFile(p.addns_xml, render("addns.xml.j2", addns), "addns", 0o600),
    ]
    for f in files:
        check_ods_xml(f.text, f.schema, str(f.path))
    check_kasp(files[0].text, files[1].text, str(p.kasp_xml))
    return files


def write_node_configs(duo: Duo, node: Node, zones: list[str]) -> list[Path]:
    files = render_node_configs(duo, node, zones)
    for f in files:
        write_atomic(f.path, f.text, f.mode)
    return [f.path for f in files]


def write_zonelist(duo: Duo, node: Node, zones: list[str]) -> None:
    """Keep zonelist.xml equal to the enforcer's zones, for `zonelist import` when rebuilding."""
    text = render("zonelist.xml.j2", zonelist_view(node, duo.config.policy.name, zones))
    path = node.paths.zonelist_xml
    check_ods_xml(text, "zonelist", str(path))
    # Keep the owner and mode node init gave it (a system node's is opendnssec's, as Debian's).
    before = path.stat() if path.exists() else None
    write_atomic(path, text, stat.S_IMODE(before.st_mode) if before else 0o644)
    if before is not None:
        os.chown(path, before.st_uid, before.st_gid)
