"""Real-daemon fixtures: a lab per test module on its own loopback addresses, always torn down."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.zone
import pytest

from duo_ods.dns.tsig import TsigKey, read_tsig_key
from duo_ods.process import python_module
from tests.support.dnssec import wait_signed

pytestmark = pytest.mark.integration


def run_duo(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `ods-duo` command line."""
    proc = subprocess.run(
        [*python_module("duo_ods"), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ods-duo {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@dataclass
class Lab:
    dir: Path
    status: dict[str, Any]

    @property
    def config(self) -> str:
        return str(self.dir / "duo.toml")

    def duo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_duo("--config", self.config, *args, check=check)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.status["nodes"] if n["name"] == name)

    def enforcer(self, node: str, *args: str) -> str:
        """The real ods-enforcer client on the node's socket, independent of our wrappers."""
        sock = Path(self.node(node)["base_dir"]) / "run" / "enforcer.sock"
        return subprocess.run(
            ["ods-enforcer", "-s", str(sock), *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    @property
    def tsig(self) -> TsigKey:
        return read_tsig_key(self.dir / "secrets" / "duo-transfer.key")

    def signed(self, node: str, zone: str, dnskeys: int = 2) -> dns.zone.Zone:
        """The node's copy of the zone by AXFR (with the lab's TSIG key), once it is signed."""
        n = self.node(node)
        return wait_signed(n["address"], n["port"], zone, dnskeys, self.tsig)

    def logs(self) -> str:
        return "\n".join(
            f"== {p}\n{p.read_text(errors='replace')[-3000:]}" for p in self.dir.glob("nodes/*/log/*.log")
        )


def lab_processes(lab_dir: Path) -> list[tuple[int, str]]:
    """Live processes whose command line mentions the lab folder (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(lab_dir) in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def without_supervisor(toml: str) -> str:
    """A lab duo.toml whose watchers do not start a dead daemon again (`[watch] supervise = false`),
    for tests that keep one dead on purpose (killed, not `node stop`)."""
    assert "[watch]\n" in toml, "the lab's duo.toml has no [watch] table"
    return toml.replace("[watch]\n", "[watch]\nsupervise = false\n")


@pytest.fixture(scope="module")
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Factory: bring a lab up on a base address; every lab it made goes down at module end."""
    made: list[Path] = []

    def make(base_address: str, *extra: str, edit: Callable[[str], str] | None = None) -> Lab:
        """`edit` rewrites the lab's duo.toml before the lab comes up (e.g. a faster policy)."""
        lab_dir = tmp_path_factory.mktemp("lab")
        made.append(lab_dir)
        if edit is not None:
            run_duo(
                "lab", "up", "--config-only", "--dir", str(lab_dir), "--base-address", base_address, *extra
            )
            config = lab_dir / "duo.toml"
            config.write_text(edit(config.read_text()))
        run_duo("--json", "lab", "up", "--dir", str(lab_dir), "--base-address", base_address, *extra)
        status = json.loads(run_duo("--json", "lab", "status", "--dir", str(lab_dir)).stdout)
        return Lab(lab_dir, status)

    yield make
    for lab_dir in made:
        run_duo("lab", "down", "--dir", str(lab_dir), check=False)
        leftover = lab_processes(lab_dir)
        for pid, _ in leftover:  # never leave daemons behind, even when a test failed midway
            os.kill(pid, 9)
