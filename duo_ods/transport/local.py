"""The local transport: each operation runs as `ods-duo node op` in a subprocess.

A subprocess per call, not an in-process call, because SoftHSM reads
SOFTHSM2_CONF once per process: each node's HSM work needs its own process
with its own environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from duo_ods.errors import TransportError
from duo_ods.transport.base import Payload, decode_reply


class LocalTransport:
    def __init__(self, config_path: Path, timeout: float = 300.0, verbose: bool = False) -> None:
        self.config_path = config_path
        self.timeout = timeout
        self.verbose = verbose

    def call(self, node: str, op: str, payload: Payload | None = None) -> Payload:
        argv = [sys.executable, "-m", "duo_ods", "--config", str(self.config_path)]
        if self.verbose:
            argv.append("-v")
        argv += ["node", "op", op, "--node", node]
        try:
            proc = subprocess.run(
                argv,
                input=json.dumps(payload or {}),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TransportError(f"node {node}: {op} did not finish within {self.timeout:.0f} s") from None
        if not proc.stdout.strip():
            err = proc.stderr.strip().splitlines()
            raise TransportError(f"node {node}: {op} failed: {err[-1] if err else f'exit {proc.returncode}'}")
        return decode_reply(node, op, proc.stdout)
