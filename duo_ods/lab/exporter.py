"""The lab's metrics exporter: one `ods-duo metrics` on the lab's base address, stopped by pid."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from duo_ods import process
from duo_ods.config.resolve import Duo

PORT = 9553  # fixed: each lab has its own base address
# Seconds between refreshes (daemons, watchers: cheap) and between checks (transfers and validates
# every zone from every copy: 55 ms of CPU a zone). Refreshes are short, so a killed signer shows at
# once; checks are not, so labs with many zones (the tests') are not slowed by their own exporter.
INTERVAL = 5.0
CHECK_INTERVAL = 60.0


def _files(lab_dir: Path) -> tuple[Path, Path]:
    return lab_dir / "state" / "exporter.json", lab_dir / "log" / "exporter.log"


def address(duo: Duo) -> str:
    """The lab's base address (node a's less one: lab up puts the nodes at base + 1 to + N)."""
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
        "--listen", address(duo), "--interval", str(INTERVAL), "--check-interval", str(CHECK_INTERVAL),
    ]  # fmt: skip
    pid = process.spawn("metrics exporter", argv, logfile, record).pid
    return f"metrics exporter (pid {pid}) serving {url(duo)}"


def stop(lab_dir: Path) -> str:
    return process.stop(_files(lab_dir)[0])


def status(lab_dir: Path, duo: Duo) -> dict[str, Any]:
    record, logfile = _files(lab_dir)
    running = process.running(record)
    return {"pid": running.pid if running else None, "url": url(duo), "log": str(logfile)}
