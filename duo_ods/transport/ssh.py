"""The ssh transport: one OpenSSH connection per node per command, to the node's agent.

The node runs `ods-duo node serve` behind its forced command (`node serve-ssh`): the same
agent, the same JSON lines as the local transport; only the carrier differs. The connection
lives as long as the transport (a command, or a watcher): one handshake per node, not one per
operation. OpenSSH's own client does the work (keys, host key
checking, the user's ssh_config for jump hosts), run with options that make it
fail fast and never ask: BatchMode, a strictly checked known_hosts file of the
duo's own, one identity, a connect timeout that also covers the handshake, and
keepalives so a peer that hangs after connecting is noticed.

Nothing secret goes on the command line: argv names the node only; every request
travels on stdin, inside the ssh channel.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping

from duo_ods.config.resolve import SshTarget
from duo_ods.transport.agent import Agent, Agents
from duo_ods.transport.base import Payload, Transport

log = logging.getLogger(__name__)

SSH_PROGRAM = "ssh"
SSH_FAILED = 255  # ssh's own exit status for a connection, auth or host key failure
KEEPALIVE_MISSES = 3  # unanswered keepalives before ssh gives up on the peer


class SshTransport:
    """One node reached through OpenSSH."""

    def __init__(self, target: SshTarget, ssh_program: str = SSH_PROGRAM) -> None:
        self.target = target
        self.ssh_program = ssh_program
        self.agents = Agents(self._start)

    @property
    def where(self) -> str:
        t = self.target
        return f"ssh {t.host}" if t.port == 22 else f"ssh {t.host} port {t.port}"

    def remote_command(self, node: str) -> str:
        """The command line the node runs, each word quoted for the remote shell (ssh joins words)."""
        t = self.target
        words = [t.remote_command, "--config", t.remote_config, "node", "serve", "--node", node]
        return " ".join(shlex.quote(w) for w in words)

    def argv(self, node: str) -> list[str]:
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
        argv += ["-p", str(t.port), "-l", t.user, "--", t.host, self.remote_command(node)]
        return argv

    def _start(self, node: str) -> Agent:
        log.debug("node %s: agent via %s", node, self.where)
        return Agent(node, self.argv(node), self.where, unreachable_exit=SSH_FAILED)

    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        return self.agents.call(node, op, payload, timeout or self.target.op_timeout)

    def close(self) -> None:
        """The connection ends with the agent's end of input."""
        self.agents.close()


class RoutingTransport:
    """Each node through its own transport; the backup store and every other target stay local."""

    def __init__(self, local: Transport, remote: Mapping[str, Transport]) -> None:
        if "backup" in remote:
            raise ValueError("the backup store is controller-local")
        self.local = local
        self.remote = dict(remote)

    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        return self.remote.get(node, self.local).call(node, op, payload, timeout)

    def close(self) -> None:
        for transport in [self.local, *self.remote.values()]:
            transport.close()
