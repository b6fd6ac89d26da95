"""The ssh transport: each operation runs as `ods-duo node op` on the node, through OpenSSH.

The same operation, the same JSON on stdin and stdout as the local transport;
only the carrier differs. OpenSSH's own client does the work (keys, host key
checking, the user's ssh_config for jump hosts), run with options that make it
fail fast and never ask: BatchMode, a strictly checked known_hosts file of the
duo's own, one identity, a connect timeout that also covers the handshake, and
keepalives so a peer that hangs after connecting is noticed.

Nothing secret goes on the command line: argv names the operation and node only;
the payload travels on stdin, inside the ssh channel.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
from collections.abc import Mapping

from duo_ods.config.resolve import SshTarget
from duo_ods.errors import TransportError
from duo_ods.transport.base import Payload, Transport, decode_reply

log = logging.getLogger(__name__)

SSH_PROGRAM = "ssh"
SSH_FAILED = 255  # ssh's own exit status for a connection, auth or host key failure
KEEPALIVE_MISSES = 3  # unanswered keepalives before ssh gives up on the peer
REAP_TIMEOUT = 5.0


class SshTransport:
    """One node reached through OpenSSH."""

    def __init__(self, target: SshTarget, ssh_program: str = SSH_PROGRAM) -> None:
        self.target = target
        self.ssh_program = ssh_program

    @property
    def where(self) -> str:
        t = self.target
        return f"ssh {t.host}" if t.port == 22 else f"ssh {t.host} port {t.port}"

    def remote_command(self, node: str, op: str) -> str:
        """The command line the node runs, each word quoted for the remote shell (ssh joins words)."""
        t = self.target
        words = [t.remote_command, "--config", t.remote_config, "node", "op", op, "--node", node]
        return " ".join(shlex.quote(w) for w in words)

    def argv(self, node: str, op: str) -> list[str]:
        t = self.target
        keepalive = max(1, t.connect_timeout // KEEPALIVE_MISSES)
        options = {
            "BatchMode": "yes",  # never prompt for a password or passphrase
            "StrictHostKeyChecking": "yes",  # an unknown or changed host key is an error
            "UserKnownHostsFile": str(t.known_hosts_file),
            "GlobalKnownHostsFile": "/dev/null",  # only the duo's own file vouches for a node
            "UpdateHostKeys": "no",  # never rewrite that file
            "CheckHostIP": "no",
            "IdentityFile": str(t.identity_file),
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "ConnectTimeout": str(t.connect_timeout),  # TCP connect and the ssh handshake
            "ServerAliveInterval": str(keepalive),
            "ServerAliveCountMax": str(KEEPALIVE_MISSES),
            "ForwardAgent": "no",
            "ForwardX11": "no",
            "ClearAllForwardings": "yes",
            "RequestTTY": "no",
            "LogLevel": "ERROR",
        }
        argv = [self.ssh_program]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        argv += ["-p", str(t.port), "-l", t.user, "--", t.host, self.remote_command(node, op)]
        return argv

    def call(self, node: str, op: str, payload: Payload | None = None) -> Payload:
        t = self.target
        argv = self.argv(node, op)
        log.debug("node %s: %s via %s", node, op, self.where)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:
            raise TransportError(f"node {node}: {op}: cannot run {self.ssh_program}: {exc.strerror}") from exc
        try:
            out, err = proc.communicate(json.dumps(payload or {}), timeout=t.op_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # the ssh client, by its pid; the node sees the connection close
            try:
                proc.communicate(timeout=REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("node %s: ssh pid %d still holds its pipes after kill", node, proc.pid)
            raise TransportError(
                f"node {node}: {op} did not answer within {t.op_timeout} s ({self.where})"
            ) from None
        if out.strip():
            return decode_reply(node, op, out)
        log.debug("node %s: %s via %s exited %d: %s", node, op, self.where, proc.returncode, err.strip())
        lines = [line.strip() for line in err.replace("\r", "").splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}"
        if proc.returncode == SSH_FAILED:
            raise TransportError(f"node {node}: {op}: cannot reach it ({self.where}): {last}")
        raise TransportError(f"node {node}: {op} failed ({self.where}): {last}")

    def close(self) -> None:
        """Nothing lives between calls (one ssh connection per operation)."""


class RoutingTransport:
    """Each node through its own transport; the backup store and every other target stay local."""

    def __init__(self, local: Transport, remote: Mapping[str, Transport]) -> None:
        if "backup" in remote:
            raise ValueError("the backup store is controller-local")
        self.local = local
        self.remote = dict(remote)

    def call(self, node: str, op: str, payload: Payload | None = None) -> Payload:
        return self.remote.get(node, self.local).call(node, op, payload)

    def close(self) -> None:
        for transport in [self.local, *self.remote.values()]:
            transport.close()
