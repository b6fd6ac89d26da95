"""Start and stop a node's ods-signerd and ods-enforcerd, each in a private mount namespace.

Each daemon runs in the foreground (-d) with its log in the node's log folder.
We remember each pid with its kernel start time, so a recycled pid is never
mistaken for our daemon, and stop by pid: SIGTERM, then SIGKILL after a timeout.
Never `ods-signer stop`/`ods-enforcer stop`: they find the daemon by name and,
with two nodes on one host, wait on the wrong one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from duo_ods.config.resolve import Node
from duo_ods.errors import CommandError, NodeError
from duo_ods.ods.client import Enforcer, Signer

log = logging.getLogger(__name__)

DAEMONS = ("signerd", "enforcerd")  # start order: the enforcer calls the signer after writing a signconf


@dataclass(frozen=True)
class DaemonRecord:
    name: str
    pid: int
    start_time: int  # /proc/PID/stat field 22, to tell our process from a recycled pid


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie is dead for our purposes
        return None
    return int(fields[19])


def _record_path(node: Node, daemon: str) -> Path:
    return node.paths.state / f"{daemon}.json"


def _read_record(path: Path) -> DaemonRecord | None:
    return DaemonRecord(**json.loads(path.read_text())) if path.exists() else None


def load_record(node: Node, daemon: str) -> DaemonRecord | None:
    return _read_record(_record_path(node, daemon))


def is_alive(record: DaemonRecord) -> bool:
    return _proc_start_time(record.pid) == record.start_time


def running(node: Node, daemon: str) -> DaemonRecord | None:
    record = load_record(node, daemon)
    return record if record is not None and is_alive(record) else None


def _command(node: Node, daemon: str) -> list[str]:
    conf = str(node.paths.conf_xml)
    binary = "/usr/sbin/ods-signerd" if daemon == "signerd" else "/usr/sbin/ods-enforcerd"
    return [
        "unshare", "-m", "--propagation", "private", "--",
        sys.executable, "-m", "duo_ods.node.nsexec", str(node.paths.run), "--",
        binary, "-c", conf, "-d",
    ]  # fmt: skip


def _spawn(node: Node, daemon: str) -> DaemonRecord:
    logfile = node.paths.log / f"{daemon}.log"
    env = dict(os.environ, SOFTHSM2_CONF=str(node.paths.softhsm_conf))
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            _command(node, daemon),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # outlives the ods-duo command that started it
            close_fds=True,
        )
    start = _proc_start_time(proc.pid)
    if start is None:
        raise NodeError(f"node {node.name}: {daemon} exited at once; see {logfile}")
    record = DaemonRecord(daemon, proc.pid, start)
    _record_path(node, daemon).write_text(json.dumps(asdict(record)))
    return record


def _ready(node: Node, daemon: str) -> bool:
    try:
        if daemon == "signerd":
            Signer(node.paths.signer_sock, timeout=10)("running")
        else:
            Enforcer(node.paths.enforcer_sock, timeout=10)("running")
    except CommandError:
        return False
    return True


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(node: Node, timeout: float = 30.0) -> dict[str, int]:
    """Start whatever of the node's daemons is not running; wait until each answers."""
    if not node.paths.conf_xml.exists():
        raise NodeError(f"node {node.name}: not initialised ({node.paths.conf_xml} missing); run node init")
    pids: dict[str, int] = {}
    for daemon in DAEMONS:
        record = running(node, daemon)
        if record is None:
            # Stale sockets from an unclean stop make the daemons refuse to start.
            sock = node.paths.signer_sock if daemon == "signerd" else node.paths.enforcer_sock
            sock.unlink(missing_ok=True)
            record = _spawn(node, daemon)
            log.info("node %s: started %s pid %d", node.name, daemon, record.pid)
        deadline = time.monotonic() + timeout
        while not _ready(node, daemon):
            if not is_alive(record):
                logfile = node.paths.log / f"{daemon}.log"
                raise NodeError(f"node {node.name}: {daemon} died at start: {_tail(logfile)}")
            if time.monotonic() > deadline:
                raise NodeError(f"node {node.name}: {daemon} did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        pids[daemon] = record.pid
    return pids


def stop_recorded(state_dir: Path, timeout: float = 20.0) -> dict[str, str]:
    """Stop the daemons whose records are in state_dir (enforcer first); SIGKILL what ignores SIGTERM.

    Needs nothing but the records, so a node can be stopped even when its config
    no longer loads.
    """
    result: dict[str, str] = {}
    for daemon in reversed(DAEMONS):
        path = state_dir / f"{daemon}.json"
        record = _read_record(path)
        if record is None or not is_alive(record):
            result[daemon] = "not running"
        else:
            os.kill(record.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while is_alive(record) and time.monotonic() < deadline:
                time.sleep(0.1)
            if is_alive(record):
                os.kill(record.pid, signal.SIGKILL)
                while is_alive(record):
                    time.sleep(0.05)
                result[daemon] = "killed"
            else:
                result[daemon] = "stopped"
            log.info("%s: %s %s", state_dir, daemon, result[daemon])
        path.unlink(missing_ok=True)
    return result


def stop(node: Node, timeout: float = 20.0) -> dict[str, str]:
    """Stop the node's daemons by pid and remove their sockets."""
    result = stop_recorded(node.paths.state, timeout)
    for sock in (node.paths.signer_sock, node.paths.enforcer_sock):
        sock.unlink(missing_ok=True)
    return result


def status(node: Node) -> dict[str, int | None]:
    return {daemon: (r.pid if (r := running(node, daemon)) else None) for daemon in DAEMONS}
