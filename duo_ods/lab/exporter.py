"""The lab's metrics exporter: one `ods-duo metrics` on the lab's base address, stopped by pid."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from duo_ods import process
from duo_ods.config.resolve import Duo

PORT = 9553  # fixed: each lab has its own base address
# Seconds between refreshes and checks: short, so the lab's metrics follow what one does to it (a
# refresh of the lab's one zone takes well under a second).
INTERVAL = 5.0


def _files(lab_dir: Path) -> tuple[Path, Path]:
    return lab_dir / "state" / "exporter.json", lab_dir / "log" / "exporter.log"


def address(duo: Duo) -> str:
    """The lab's base address (node a's less one: lab up puts the nodes at base + 1 and + 2)."""
    first = next(iter(duo.nodes.values()))
    return f"{ipaddress.IPv4Address(first.address) - 1}:{PORT}"


def url(duo: Duo) -> str:
    return f"http://{address(duo)}/metrics"


def start(lab_dir: Path, duo: Duo) -> str:
    """Start it (unless it runs); says what was done."""
    record, logfile = _files(lab_dir)
    if (running := process.running(record)) is not None:
        return f"metrics exporter (pid {running.pid}) serving {url(duo)}"
    argv = [
        *process.python_module("duo_ods"), "--config", str(duo.config_path), "metrics",
        "--listen", address(duo), "--interval", str(INTERVAL), "--check-interval", str(INTERVAL),
    ]  # fmt: skip
    pid = process.spawn("metrics exporter", argv, logfile, record).pid
    return f"metrics exporter (pid {pid}) serving {url(duo)}"


def stop(lab_dir: Path) -> str:
    return process.stop(_files(lab_dir)[0])


def status(lab_dir: Path, duo: Duo) -> dict[str, Any]:
    record, logfile = _files(lab_dir)
    running = process.running(record)
    return {"pid": running.pid if running else None, "url": url(duo), "log": str(logfile)}
