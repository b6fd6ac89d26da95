"""Start and stop a node's ods-signerd and ods-enforcerd, each in a private mount namespace.

A system node on its machine's own root needs no namespace; where systemd runs, its
Debian units start and stop the daemons instead (duo_ods.node.systemd).

Each daemon runs in the foreground (-d) with its log in the node's log folder,
and is stopped by pid (duo_ods.process). Never `ods-signer stop`/`ods-enforcer
stop`: they find the daemon by name and, with two nodes on one host, wait on
the wrong one.

Starting and stopping take the node's daemon lock (state/daemons.lock, across processes): the
watcher's supervisor (duo_ods.node.supervise) starts a daemon that died, and must neither race a
`node start`/`node stop` nor slip into a planned stop-then-start (zone removal, key state adopt).
A whole-node stop (`ods-duo node stop`, a restore) is recorded as on purpose (state/stopped.json):
the supervisor leaves such a node alone until a start clears it.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from duo_ods import process
from duo_ods.config.resolve import Node
from duo_ods.errors import CommandError, NodeError
from duo_ods.node import systemd
from duo_ods.ods.client import Enforcer, Signer
from duo_ods.process import ProcessRecord

DAEMONS = ("signerd", "enforcerd")  # start order: the enforcer calls the signer after writing a signconf


def _record_path(node: Node, daemon: str) -> Path:
    return node.paths.state / f"{daemon}.json"


def stopped_path(state_dir: Path) -> Path:
    """Written by a whole-node stop (on purpose), removed by a start."""
    return state_dir / "stopped.json"


def stopped_on_purpose(node: Node) -> dict[str, object] | None:
    """What `node stop` recorded ({"at": epoch}), or None when the node was not stopped on purpose."""
    try:
        return dict(json.loads(stopped_path(node.paths.state).read_text()))
    except (OSError, ValueError):
        return None


# (lock file, thread) -> (fd, depth): re-entrant within a thread; another thread opens the file
# again, and its flock waits like another process's
_held: dict[tuple[str, int], tuple[int, int]] = {}
_held_guard = threading.Lock()


@contextmanager
def held(node: Node, wait: bool = True) -> Iterator[bool]:
    """The node's daemon lock (flock on state/daemons.lock), re-entrant within a thread.
    Yields False (and holds nothing) when wait is False and someone else holds it."""
    path = node.paths.state / "daemons.lock"
    key = (str(path), threading.get_ident())
    with _held_guard:
        mine = _held.get(key)
        if mine is not None:
            _held[key] = (mine[0], mine[1] + 1)
    acquired = mine is not None
    if not acquired:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
        else:
            acquired = True
            with _held_guard:
                _held[key] = (fd, 1)
    try:
        yield acquired
    finally:
        if acquired:
            with _held_guard:
                fd, depth = _held[key]
                if depth > 1:
                    _held[key] = (fd, depth - 1)
                else:
                    del _held[key]
                    os.close(fd)  # releases the flock


def running(node: Node, daemon: str) -> ProcessRecord | None:
    if systemd.uses_systemd(node):
        pid = systemd.main_pid(systemd.UNITS[daemon])
        start = process.proc_start_time(pid) if pid else None
        return ProcessRecord(daemon, pid, start) if pid and start is not None else None
    return process.running(_record_path(node, daemon))


def _command(node: Node, daemon: str) -> list[str]:
    conf = str(node.paths.conf_xml)
    binary = "/usr/sbin/ods-signerd" if daemon == "signerd" else "/usr/sbin/ods-enforcerd"
    if not node.paths.namespace:  # a system node on its machine's own root: /run/opendnssec is its own
        return [binary, "-c", conf, "-d"]
    return [
        "unshare", "-m", "--propagation", "private", "--",
        *process.python_module("duo_ods.node.nsexec"), str(node.paths.run), "--",
        binary, "-c", conf, "-d",
    ]  # fmt: skip


def _ready(node: Node, daemon: str) -> bool:
    try:
        if daemon == "signerd":
            Signer(node.paths.signer_sock, timeout=10)("running")
        else:
            Enforcer(node.paths.enforcer_sock, timeout=10)("running")
    except CommandError:
        return False
    return True


def start(node: Node, timeout: float = 30.0, only: tuple[str, ...] = DAEMONS) -> dict[str, int]:
    """Start whatever of the node's daemons (or of `only`) is not running; wait until each answers.
    A start of the whole node ends a stop on purpose (the supervisor looks after it again)."""
    if not node.paths.conf_xml.exists():
        raise NodeError(f"node {node.name}: not initialised ({node.paths.conf_xml} missing); run node init")
    with held(node):
        if set(only) == set(DAEMONS):
            stopped_path(node.paths.state).unlink(missing_ok=True)
        if systemd.uses_systemd(node):
            return _start_units(node, timeout, only)
        return _start_own(node, timeout, only)


def _start_own(node: Node, timeout: float, only: tuple[str, ...]) -> dict[str, int]:
    pids: dict[str, int] = {}
    for daemon in (d for d in DAEMONS if d in only):
        logfile = node.paths.log / f"{daemon}.log"
        record = running(node, daemon)
        if record is None:
            # A stale socket or pid file from an unclean stop makes the daemon refuse to start
            # (ods-enforcerd was seen crashing on SIGTERM and leaving its pid file; ODS then takes
            # the unreaped zombie for a running daemon). Our record says it is gone: clear both.
            sock = node.paths.signer_sock if daemon == "signerd" else node.paths.enforcer_sock
            sock.unlink(missing_ok=True)
            (node.paths.run / f"{daemon}.pid").unlink(missing_ok=True)
            env = {"SOFTHSM2_CONF": str(node.paths.softhsm_conf)}
            try:
                record = process.spawn(
                    daemon, _command(node, daemon), logfile, _record_path(node, daemon), env=env
                )
            except OSError as exc:
                raise NodeError(f"node {node.name}: {exc}") from None
        deadline = time.monotonic() + timeout
        while not _ready(node, daemon):
            if not process.is_alive(record):
                raise NodeError(f"node {node.name}: {daemon} died at start: {process.tail(logfile)}")
            if time.monotonic() > deadline:
                raise NodeError(f"node {node.name}: {daemon} did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        pids[daemon] = record.pid
    return pids


def _wait_ready(node: Node, daemon: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(node, daemon):
        if time.monotonic() > deadline:
            raise NodeError(f"node {node.name}: {daemon} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def _start_units(node: Node, timeout: float, only: tuple[str, ...] = DAEMONS) -> dict[str, int]:
    """systemd runs the daemons: start the units (signer first) and wait until each answers."""
    pids: dict[str, int] = {}
    for daemon in (d for d in DAEMONS if d in only):
        systemd.systemctl("start", systemd.UNITS[daemon])
        _wait_ready(node, daemon, timeout)
        record = running(node, daemon)
        if record is None:
            raise NodeError(f"node {node.name}: {systemd.UNITS[daemon]} has no main pid after start")
        pids[daemon] = record.pid
    return pids


def stop_recorded(state_dir: Path, timeout: float = 20.0) -> dict[str, str]:
    """Stop the daemons recorded in state_dir, enforcer first. Needs nothing but the records,
    so a node can be stopped even when its config no longer loads."""
    return {daemon: process.stop(state_dir / f"{daemon}.json", timeout) for daemon in reversed(DAEMONS)}


def stop(node: Node, timeout: float = 20.0) -> dict[str, str]:
    """Stop the node's daemons by pid (or their systemd units) and remove their sockets. Recorded as
    a stop on purpose: the watcher's supervisor does not start them again (duo_ods.node.supervise)."""
    with held(node):
        node.paths.state.mkdir(parents=True, exist_ok=True)
        stopped_path(node.paths.state).write_text(json.dumps({"at": time.time()}) + "\n")
        if systemd.uses_systemd(node):
            for daemon in reversed(DAEMONS):
                systemd.systemctl("stop", systemd.UNITS[daemon])
            return {daemon: "stopped by systemd" for daemon in reversed(DAEMONS)}
        result = stop_recorded(node.paths.state, timeout)
        for sock in (node.paths.signer_sock, node.paths.enforcer_sock):
            sock.unlink(missing_ok=True)
        return result


def stop_signer(node: Node, timeout: float = 20.0) -> str:
    """Stop only the node's signer (by pid, or its unit); the caller starts it again, holding the
    node's daemon lock meanwhile so the supervisor does not step in."""
    with held(node):
        if systemd.uses_systemd(node):
            systemd.systemctl("stop", systemd.UNITS["signerd"])
            return "stopped by systemd"
        result = process.stop(_record_path(node, "signerd"), timeout)
        node.paths.signer_sock.unlink(missing_ok=True)
        return result


@contextmanager
def signer_stopped(node: Node) -> Iterator[None]:
    """Run the body with the node's signer stopped (if it ran), then start it again, all under the
    node's daemon lock. The signer is started again even when the body fails."""
    with held(node):
        if running(node, "signerd") is None:
            yield
            return
        stop_signer(node)
        try:
            yield
        finally:
            start(node, only=("signerd",))


def stop_enforcer(node: Node, timeout: float = 5.0) -> str:
    """Stop only the node's enforcer (by pid, or its unit); the signer serves on meanwhile.

    A short timeout: ods-enforcerd 2.1.12 was seen to crash on SIGTERM (a segfault in its janitor)
    and then hang until killed; its database is SQLite, written in transactions, so nothing is lost.
    """
    with held(node):
        if systemd.uses_systemd(node):
            systemd.systemctl("stop", systemd.UNITS["enforcerd"])
            return "stopped by systemd"
        result = process.stop(_record_path(node, "enforcerd"), timeout)
        node.paths.enforcer_sock.unlink(missing_ok=True)
        return result


def status(node: Node) -> dict[str, int | None]:
    return {daemon: (r.pid if (r := running(node, daemon)) else None) for daemon in DAEMONS}
