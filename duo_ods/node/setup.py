"""`node init`: everything a node needs before its daemons start. Idempotent."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from xml.etree import ElementTree

from duo_ods.config.resolve import Duo, Node
from duo_ods.node.configs import write_node_configs
from duo_ods.node.secrets import ensure_secret
from duo_ods.node.token import init_token, write_softhsm_conf

ODS_SQLITE_SCHEMA = Path("/usr/share/opendnssec/schema.sqlite")


def make_directories(node: Node) -> None:
    p = node.paths
    for path, mode in (
        (p.base, 0o755),
        (p.etc, 0o750),
        (p.var, 0o750),
        (p.enforcer_dir, 0o750),
        (p.signer_dir, 0o750),
        (p.signconf_dir, 0o750),
        (p.unsigned_dir, 0o750),
        (p.tokens, 0o700),
        (p.run, 0o755),
        (p.log, 0o750),
        (p.secrets, 0o700),
        (p.state, 0o750),
        (node.input_dir, 0o755),
    ):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)


def init_enforcer_db(node: Node) -> bool:
    """Create the enforcer's SQLite database as ods-enforcer-db-setup would.

    ods-enforcer-db-setup has no -c option and only reads /etc/opendnssec/conf.xml,
    so we load ODS's own schema file ourselves.
    """
    db = node.paths.kasp_db
    if db.exists():
        return False
    create_enforcer_db(db)
    return True


def create_enforcer_db(db: Path, mode: int = 0o600) -> None:
    """A new enforcer database at db, from ODS's schema file (db must not exist)."""
    tmp = db.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as conn:
        conn.executescript(ODS_SQLITE_SCHEMA.read_text(encoding="utf-8"))
        conn.execute("INSERT INTO databaseVersion (version) VALUES (1)")
    conn.close()
    tmp.chmod(mode)
    tmp.rename(db)


def zonelist_zones(node: Node) -> list[str]:
    """The zones in the node's current zonelist.xml (empty before the first init)."""
    if not node.paths.zonelist_xml.exists():
        return []
    # Our own rendered file, not untrusted input.
    root = ElementTree.parse(node.paths.zonelist_xml).getroot()  # noqa: S314
    return [z.attrib["name"] for z in root.iter("Zone")]


def init_node(duo: Duo, node: Node) -> dict[str, object]:
    """Directories, secrets, token, enforcer database, configs. Returns what was done."""
    make_directories(node)
    pin = ensure_secret(node.pin_file)
    so_pin = ensure_secret(node.paths.secrets / "so-pin")
    done: dict[str, object] = {"node": node.name}
    if node.config.softhsm:
        write_softhsm_conf(node.paths.softhsm_conf, node.paths.tokens, f"node {node.name}")
        label = node.config.token_label
        done["token_created"] = init_token(node.paths.softhsm_conf, label, pin, so_pin, f"node {node.name}")
    done["database_created"] = init_enforcer_db(node)
    done["configs"] = [str(p) for p in write_node_configs(duo, node, zonelist_zones(node))]
    return done
