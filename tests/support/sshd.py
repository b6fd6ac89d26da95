"""A real OpenSSH server of a node's own, and a controller config that reaches the nodes over ssh.

No pytest here: tests/support/ssh_lab.py (the tests) and bench/key_bench.py (local against ssh
transport) both use it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSH_PORT = 2211


@dataclass
class Sshd:
    name: str
    address: str
    dir: Path
    proc: subprocess.Popen[bytes]
    host_key_line: str  # "ssh-ed25519 AAAA..."

    @property
    def log_path(self) -> Path:
        return self.dir / "sshd.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def accepted(self) -> int:
        return self.log().count("Accepted publickey for root")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def wait_banner(address: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sshd on {address} exited {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"sshd on {address} port {port} does not answer:\n{log.read_text()}")


def start_sshd(name: str, address: str, base: Path, authorized: list[str], port: int = SSH_PORT) -> Sshd:
    """A real sshd of the node's own: own host key, own config, own authorized_keys, in `base`."""
    base.mkdir(parents=True, exist_ok=True)
    host_key = base / "host_key"
    public = keygen(host_key) if not host_key.exists() else host_key.with_suffix(".pub").read_text().strip()
    (base / "authorized_keys").write_text("".join(line + "\n" for line in authorized))
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress {address}:{port}\n"
        f"HostKey {host_key}\n"
        f"PidFile {base / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "PermitUserEnvironment ODS_DUO_FAULT\n"  # test_ssh's mid-flow test kills b's agent through it
        "StrictModes no\n"  # the pytest temp folders sit under world-writable /tmp
        "LogLevel VERBOSE\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    with (base / "sshd.log").open("ab") as log:
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
    wait_banner(address, port, proc, base / "sshd.log")
    return Sshd(name, address, base, proc, " ".join(public.split()[:2]))


def ssh_config_text(config: str, settings: Mapping[str, Mapping[str, Any]]) -> str:
    """The text of a duo.toml with each node in `settings` switched to the ssh transport, with those
    [nodes.NAME.ssh] settings."""
    assert "transport" not in config
    for node in settings:
        header = f"[nodes.{node}]\n"
        assert header in config
        config = config.replace(header, f'{header}transport = "ssh"\n', 1)
    for node, table in settings.items():
        config += f"\n[nodes.{node}.ssh]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    return config
