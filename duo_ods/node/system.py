"""`node init` for a system-layout node: Debian's OpenDNSSEC and SoftHSM paths, one node per machine.

Three parts: `wanted` computes what the node needs (pure apart from reading the secrets and the
transfer key it must keep), `observe` takes a snapshot of what is there, `apply` does the steps
that duo_ods.node.plan.plan_steps derived from both. `init_system_node` shows the plan and, unless
it is a dry run, acts on it; a second run finds nothing to do.

Owners and modes are the ones the Debian packages set (opendnssec-common and softhsm2-common
postinst, opendnssec-signer's tmpfiles.d): /etc/opendnssec root:opendnssec 0770 with its files
0640 (zonelist.xml owned by opendnssec), /var/lib/opendnssec root:opendnssec 0750 with
opendnssec-owned 0755 subfolders, /etc/softhsm root:softhsm 0750, /var/lib/softhsm(/tokens)
root:softhsm 2770, /run/opendnssec opendnssec:opendnssec 0775. The Debian units run the daemons
as root (no User=, no <Privileges> in conf.xml), so ods-duo does the same.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import logging
import os
import pwd
import secrets
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from duo_ods.bind.relay import relay_files, render_relay_conf
from duo_ods.config.resolve import Duo, Node, SystemNodePaths
from duo_ods.dns.tsig import TsigKey, read_tsig_key
from duo_ods.errors import DuoError, NodeError
from duo_ods.node import systemd
from duo_ods.node.configs import render_node_configs
from duo_ods.node.plan import (
    Note,
    Observed,
    PathState,
    Perms,
    Step,
    UnitState,
    Want,
    WantAbsent,
    WantDatabase,
    WantDir,
    WantFile,
    WantSecret,
    WantToken,
    WantUnit,
    format_plan,
    pending,
    plan_steps,
)
from duo_ods.node.secrets import ensure_secret
from duo_ods.node.setup import create_enforcer_db, zonelist_zones
from duo_ods.node.token import init_token, token_labels
from duo_ods.render.engine import render, write_atomic

log = logging.getLogger(__name__)

ODS = "opendnssec"  # the Debian packages' user and group
SOFTHSM = "softhsm"  # softhsm2-common's group
ODS_VAR_DIRS = ("db", "enforcer", "signconf", "signed", "signer", "tmp", "unsigned")


def _paths(node: Node) -> SystemNodePaths:
    if not isinstance(node.paths, SystemNodePaths):
        raise NodeError(f"node {node.name}: not a system-layout node")
    return node.paths


def _existing_secret(path: Path) -> str | None:
    return ensure_secret(path) if path.exists() else None


def _tsig_key(duo: Duo) -> tuple[TsigKey, bool]:
    """The duo's transfer key, or a new one to write (True) when there is none yet."""
    if duo.tsig_key_path.exists():
        return read_tsig_key(duo.tsig_key_path), False
    t = duo.config.transfer
    return TsigKey(t.key_name, t.algorithm, base64.b64encode(secrets.token_bytes(32)).decode()), True


def wanted(duo: Duo, node: Node, use_systemd: bool) -> list[Want]:
    """Everything the node needs, in the order init makes it."""
    p = _paths(node)
    ods_dir, ods_file = Perms("root", ODS, 0o750), Perms("root", ODS, 0o640)
    secret = Perms("root", "root", 0o600)
    wants: list[Want] = [
        WantDir(p.etc, Perms("root", ODS, 0o770)),
        WantDir(p.var, ods_dir),
        *(WantDir(p.var / d, Perms(ODS, ODS, 0o755)) for d in ODS_VAR_DIRS),
        WantDir(p.run, Perms(ODS, ODS, 0o775)),
        # ods-duo's own: secrets, daemon records and logs, the watched input folder
        WantDir(p.base, Perms("root", "root", 0o755)),
        WantDir(p.secrets, Perms("root", "root", 0o700)),
        WantDir(p.state, Perms("root", "root", 0o750)),
        WantDir(p.log, Perms("root", "root", 0o750)),
        WantDir(node.input_dir, Perms("root", "root", 0o755)),
    ]
    pin = _existing_secret(node.pin_file) or secrets.token_hex(16)
    so_pin_file = p.secrets / "so-pin"
    so_pin = _existing_secret(so_pin_file) or secrets.token_hex(16)
    wants += [WantSecret(node.pin_file, pin + "\n", secret), WantSecret(so_pin_file, so_pin + "\n", secret)]
    key, new_key = _tsig_key(duo)
    what = "the transfer TSIG key (copy it to every other node and secondary)"
    wants.append(WantSecret(duo.tsig_key_path, render("tsig.key.j2", key) if new_key else "", secret, what))
    if node.config.softhsm:
        softhsm_group = Perms("root", SOFTHSM, 0o2770)
        conf_text = render("softhsm2.conf.j2", {"node": node.name, "tokendir": str(p.tokens)})
        wants += [
            WantDir(p.softhsm_conf.parent, Perms("root", SOFTHSM, 0o750)),
            WantDir(p.softhsm_dir, softhsm_group),
            WantDir(p.tokens, softhsm_group),
            WantFile(p.softhsm_conf, conf_text, Perms("root", SOFTHSM, 0o640)),
            WantToken(node.config.token_label, p.softhsm_conf, p.tokens, node.pin_file, so_pin_file),
        ]
    wants.append(WantDatabase(p.kasp_db, Perms(ODS, ODS, 0o640)))
    owners = {p.zonelist_xml: Perms(ODS, ODS, 0o640)}  # as Debian: the enforcer may rewrite it
    for f in render_node_configs(duo, node, zonelist_zones(node), pin=pin, key=key):
        restarts = f.path in (p.conf_xml, p.addns_xml)
        wants.append(WantFile(f.path, f.text, owners.get(f.path, ods_file), f.schema, restarts))
    wants.append(WantAbsent(p.prevent_startup, "Debian's flag that keeps the units from starting"))
    wants += _relay_wants(duo, node, render("tsig.key.j2", key))
    if use_systemd:
        wants += [WantUnit(unit) for unit in systemd.UNITS.values()]
    else:
        why = f"root {p.root} is not the machine's" if p.namespace else "no systemd here"
        how = f"`ods-duo node start {node.name}` runs them, `node stop` stops them by pid"
        wants.append(Note("daemons", f"{why}: {how}"))
    return wants


def _relay_wants(duo: Duo, node: Node, key_text: str) -> list[Want]:
    """The node's transfer relay: its folder, its copy of the transfer key (group bind reads it: the
    duo's own is root's alone) and named.conf (checked by named-checkconf when relay-sync first writes
    its zone list); named runs it as a service of its own, as user bind."""
    relay = Perms("root", "bind", 0o770)  # named (user bind) writes its zone copies there
    files = relay_files(node)
    what = "a copy of the transfer TSIG key for the relay (named, user bind)"
    return [
        WantDir(node.relay_dir, relay),
        WantDir(node.relay_dir / "zones", relay),
        WantSecret(files["key"], key_text, Perms("root", "bind", 0o640), what),
        WantFile(files["conf"], render_relay_conf(duo, node), Perms("root", "bind", 0o640)),
        Note("relay", f"run `named -u bind -c {files['conf']}` as a service "
                      "(docs/operators-guide.md, \"Relays\"); the watcher keeps its zone list and catalog"),
    ]  # fmt: skip


def _name(lookup: Any, number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def _path_state(path: Path) -> PathState | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    perms = Perms(_name(pwd.getpwuid, st.st_uid), _name(grp.getgrgid, st.st_gid), stat.S_IMODE(st.st_mode))
    if stat.S_ISDIR(st.st_mode):
        return PathState("dir", perms)
    if stat.S_ISREG(st.st_mode):
        return PathState("file", perms, hashlib.sha256(path.read_bytes()).hexdigest())
    return PathState("other", perms)


def _db_version(path: Path) -> int | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT version FROM databaseVersion").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def observe(wants: Sequence[Want]) -> Observed:
    """What is there now, for each wanted thing. Reads only."""
    paths: dict[Path, PathState] = {}
    tokens: frozenset[str] = frozenset()
    databases: dict[Path, int | None] = {}
    units: dict[str, UnitState] = {}
    for want in wants:
        if isinstance(want, WantDir | WantFile | WantSecret | WantDatabase | WantAbsent):
            state = _path_state(want.path)
            if state is not None:
                paths[want.path] = state
                if isinstance(want, WantDatabase):
                    databases[want.path] = _db_version(want.path)
        elif isinstance(want, WantToken):
            tokens = token_labels(want.tokendir) if want.tokendir.is_dir() else frozenset()
        elif isinstance(want, WantUnit):
            units[want.name] = systemd.unit_state(want.name)
    return Observed(paths=paths, tokens=tokens, databases=databases, units=units)


def _own(path: Path, perms: Perms) -> None:
    try:
        uid, gid = pwd.getpwnam(perms.user).pw_uid, grp.getgrnam(perms.group).gr_gid
    except KeyError as exc:
        why = f"no user or group {exc}; install the opendnssec and softhsm2 packages"
        raise NodeError(f"{path}: {why}") from None
    os.chown(path, uid, gid)
    os.chmod(path, perms.mode)


def _write_secret(path: Path, text: str, perms: Perms) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    _own(path, perms)


def apply_step(step: Step, node: Node) -> None:
    want = step.want
    if isinstance(want, WantDir):
        want.path.mkdir(parents=True, exist_ok=True)
        _own(want.path, want.perms)
    elif isinstance(want, WantFile):
        if step.action != "chmod":
            write_atomic(want.path, want.text, want.perms.mode)
        _own(want.path, want.perms)
    elif isinstance(want, WantSecret):
        if step.action == "create":
            _write_secret(want.path, want.value, want.perms)
        else:
            _own(want.path, want.perms)
    elif isinstance(want, WantToken):
        pin, so_pin = ensure_secret(want.pin_file), ensure_secret(want.so_pin_file)
        init_token(want.softhsm_conf, want.label, pin, so_pin, f"node {node.name}")
    elif isinstance(want, WantDatabase):
        if step.action == "create":
            create_enforcer_db(want.path, want.perms.mode)
        _own(want.path, want.perms)
    elif isinstance(want, WantAbsent):
        want.path.unlink(missing_ok=True)
    elif isinstance(want, WantUnit):
        systemd.systemctl(step.action, want.name)
    log.info("node %s: %s %s %s", node.name, step.action, step.kind, step.target)


def init_system_node(duo: Duo, node: Node, dry_run: bool = False) -> dict[str, Any]:
    """Plan the node's init and, unless dry_run, do the steps. The reply carries the plan."""
    p = _paths(node)
    wants = wanted(duo, node, systemd.uses_systemd(node))
    steps = plan_steps(wants, observe(wants))
    todo = pending(steps)
    done: list[dict[str, str]] = []
    if not dry_run:
        for step in todo:
            try:
                apply_step(step, node)
            except (OSError, DuoError) as exc:
                raise NodeError(
                    f"node {node.name}: {step.action} {step.kind} {step.target} failed after "
                    f"{len(done)} step(s): {exc}"
                ) from exc
            done.append(step.as_dict())
    return {
        "node": node.name,
        "layout": "system",
        "root": str(p.root),
        "dry_run": dry_run,
        "plan": [s.as_dict() for s in steps],
        "pending": len(todo),
        "done": done,
        "text": format_plan(steps),
    }
