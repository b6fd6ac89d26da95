"""Real OpenSSH servers in front of a lab's nodes, for tests of the ssh transport (issues 8, 14).

Next to each node's ODS listener an sshd of its own (own host key, own config, own
authorized_keys) whose client key may run only the node's forced command (`ods-duo node
serve-ssh`, node a through the shipped wrapper script). The controller-side configs are copies of
the lab's config with the nodes' transport switched to ssh; the nodes serve with the lab's
original (local) config. Used by tests/integration/test_ssh.py and test_ssh_flows.py, each with a
lab on its own addresses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.conftest import Lab, lab_processes, run_duo
from tests.support.sshd import SSH_PORT, Sshd, keygen, ssh_config_text, start_sshd

__all__ = ["CONNECT_TIMEOUT", "SSH_PORT", "SshLab", "Sshd", "keygen", "kill_leftovers", "sshd_in_front"]

REPO = Path(__file__).resolve().parents[2]
ODS_DUO = str(Path(sys.executable).with_name("ods-duo"))  # the venv's, as a node would have it
CONNECT_TIMEOUT = 2


@dataclass
class SshLab:
    lab: Lab
    dir: Path
    sshd: dict[str, Sshd]
    client_key: Path
    known_hosts: Path
    port: int = SSH_PORT
    ods_duo: str = ODS_DUO  # the nodes' ods-duo program

    @property
    def nodes(self) -> dict[str, str]:
        return {name: server.address for name, server in self.sshd.items()}

    def config(self, name: str, **per_node: dict[str, Any]) -> str:
        """A copy of the lab's config with both nodes on ssh; per_node changes a node's ssh table."""
        settings = {
            node: {
                "port": self.port,
                "identity_file": str(self.client_key),
                "known_hosts_file": str(self.known_hosts),
                "remote_command": self.ods_duo,
                "remote_config": self.lab.config,
                "connect_timeout": CONNECT_TIMEOUT,
                "op_timeout": 120,
            }
            | per_node.get(node, {})
            for node in self.sshd
        }
        path = self.lab.dir / f"{name}.toml"  # next to the original: relative paths resolve alike
        path.write_text(ssh_config_text(Path(self.lab.config).read_text(), settings))
        return str(path)

    def duo(self, config: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_duo("--config", config, *args, check=check)

    def logs(self) -> str:
        return "\n".join(f"== sshd {n}\n{s.log()[-3000:]}" for n, s in self.sshd.items())


def shipped_wrapper(folder: Path, config: str, ods_duo: str = ODS_DUO) -> Path:
    """contrib/ssh/ods-duo-forced-command with its two paths set for this lab, as an operator would."""
    text = (REPO / "contrib" / "ssh" / "ods-duo-forced-command").read_text()
    for line, value in (
        ("ODS_DUO=/usr/local/bin/ods-duo\n", ods_duo),
        ("CONFIG=/etc/ods-duo/duo.toml\n", config),
    ):
        assert line in text
        text = text.replace(line, line.split("=")[0] + f"={value}\n")
    path = folder / "ods-duo-forced-command"
    path.write_text(text)
    path.chmod(0o755)
    return path


def forced_commands(config: str, folder: Path, ods_duo: str = ODS_DUO) -> dict[str, str]:
    """Node a through the shipped wrapper script, node b through `node serve-ssh` itself."""
    return {
        "a": f"{shipped_wrapper(folder, config, ods_duo)} a",
        "b": f"{ods_duo} --config {config} node serve-ssh --node b",
    }


def kill_leftovers(marker: Path) -> None:
    """Processes whose command line names `marker` (e.g. a forced command that outlived its ssh
    client): stopped by pid."""
    for pid, _ in lab_processes(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


ExtraKeys = Callable[[str, str], list[str]]  # (node, its forced command) -> more authorized_keys lines


@contextmanager
def sshd_in_front(
    lab: Lab,
    base: Path,
    nodes: dict[str, str],
    *,
    extra_keys: ExtraKeys | None = None,
    port: int = SSH_PORT,
    ods_duo: str = ODS_DUO,
) -> Iterator[SshLab]:
    """An sshd per node (nodes: name -> the node's address) with a client key for the forced
    command; every sshd stopped by pid at the end."""
    client = base / "client_key"
    client_pub = keygen(client)
    forced = forced_commands(lab.config, base, ods_duo)
    sshd: dict[str, Sshd] = {}
    try:
        for node, address in nodes.items():
            authorized = [f'command="{forced[node]}",restrict {client_pub}']
            if extra_keys is not None:
                authorized += extra_keys(node, forced[node])
            sshd[node] = start_sshd(node, address, base / f"sshd-{node}", authorized, port)
        known_hosts = base / "known_hosts"
        known_hosts.write_text("".join(f"[{s.address}]:{port} {s.host_key_line}\n" for s in sshd.values()))
        yield SshLab(lab, base, sshd, client, known_hosts, port, ods_duo)
    finally:
        for server in sshd.values():
            server.stop()
