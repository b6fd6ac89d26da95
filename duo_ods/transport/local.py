"""The local transport: each node (and the backup store) answered by its own long-lived agent process.

A process per node, not an in-process call, because SoftHSM reads SOFTHSM2_CONF once per
process: each node's HSM work needs its own process with its own environment. One agent per
node lives as long as this transport (a command, or a watcher), so a command pays Python's
start-up once per node instead of once per operation.
"""

from __future__ import annotations

from pathlib import Path

from duo_ods.process import python_module
from duo_ods.transport.agent import Agent, Agents
from duo_ods.transport.base import Payload


class LocalTransport:
    def __init__(self, config_path: Path, timeout: float = 300.0, verbose: bool = False) -> None:
        self.config_path = config_path
        self.timeout = timeout
        self.verbose = verbose
        self.agents = Agents(self._start)

    def _start(self, node: str) -> Agent:
        argv = [*python_module("duo_ods"), "--config", str(self.config_path)]
        if self.verbose:
            argv.append("-v")
        argv += ["node", "serve", "--node", node]
        return Agent(node, argv, "local agent")

    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        return self.agents.call(node, op, payload, timeout or self.timeout)

    def close(self) -> None:
        self.agents.close()
