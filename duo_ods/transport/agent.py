"""A long-lived agent per node: one `ods-duo node serve` process answers many requests over one pipe.

Starting Python for every node operation cost 0.2-0.7 s an operation (a key pair for one zone on
two nodes is 19 of them). An agent starts once per node for the length of a command (and for the
whole life of a watcher), in the node's own environment (SoftHSM reads SOFTHSM2_CONF once per
process: one agent per node and one for the backup store), and serves newline-delimited JSON:
one request line {"op": NAME, "payload": {...}} in, one reply line out (transport.base's reply).

Whatever carries the pipe (a local subprocess, OpenSSH to the node's forced command) is the
caller's `argv`. An agent that dies or does not answer within the timeout is killed (by its pid)
and the call fails with one line naming the node; the next call starts a new agent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from duo_ods.errors import TransportError
from duo_ods.transport.base import Payload, decode_reply

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 16
REAP_TIMEOUT = 5.0
STDERR_KEPT = 20


class Agent:
    """One running agent process and its pipes; one request at a time (a lock per agent)."""

    def __init__(self, node: str, argv: list[str], where: str, unreachable_exit: int | None = None) -> None:
        """`unreachable_exit`: the carrier's exit status for "could not reach the node" (ssh's 255)."""
        self.node = node
        self.where = where
        self.unreachable_exit = unreachable_exit
        try:
            # A session of its own: a hung agent is killed with whatever it runs (an ods-enforcer
            # client waiting on a stopped daemon would outlive it otherwise).
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise TransportError(f"node {node}: cannot run {argv[0]}: {exc.strerror}") from None
        self.lock = threading.Lock()
        self.answered = False  # it replied once: the carrier reached the node
        self.buffer = b""
        self.stderr: deque[str] = deque(maxlen=STDERR_KEPT)
        self._stderr_reader = threading.Thread(
            target=self._drain_stderr, daemon=True, name=f"agent-{node}-stderr"
        )
        self._stderr_reader.start()

    def _drain_stderr(self) -> None:
        """Keep the agent's log lines (it must never block on a full stderr pipe)."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.stderr.append(line)
                log.debug("agent %s: %s", self.node, line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_words(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        return lines[-1] if lines else f"exit {self.proc.poll()}"

    def _gone(self, op: str) -> TransportError:
        """The agent ended without a reply: why, in one line (its last words, once it has exited)."""
        self.stop()
        unreachable = self.unreachable_exit is not None and self.proc.returncode == self.unreachable_exit
        if unreachable and not self.answered:
            return TransportError(
                f"node {self.node}: {op}: cannot reach it ({self.where}): {self.last_words()}"
            )
        return TransportError(f"node {self.node}: {op} failed ({self.where}): {self.last_words()}")

    def _read_line(self, timeout: float) -> bytes | None:
        """One reply line, or None when the agent closed its end; TimeoutError past `timeout`."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def request(self, op: str, payload: Payload | None, timeout: float) -> Payload:
        assert self.proc.stdin is not None
        line = json.dumps({"op": op, "payload": payload or {}}).encode() + b"\n"
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (OSError, ValueError):  # it is gone: a broken pipe, or its stdin closed by a kill()
            # after another thread's call to it timed out (check asks a node twice at once)
            raise self._gone(op) from None
        try:
            reply = self._read_line(timeout)
        except TimeoutError:
            self.kill()
            raise TransportError(
                f"node {self.node}: {op} did not answer within {timeout:.0f} s ({self.where})"
            ) from None
        if reply is None:
            raise self._gone(op)
        self.answered = True
        return decode_reply(self.node, op, reply.decode())

    def kill(self) -> None:
        """It hangs: SIGKILL to it and its children (its process group, whose id is its pid), and
        reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        """Close its input (it exits on end of input), then kill it by its pid if it lingers; reap it
        and close its pipes."""
        self.hang_up()
        self.reap()

    def hang_up(self) -> None:
        """Close its input: it exits on end of input."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):  # it died already
                self.proc.stdin.close()

    def reap(self) -> None:
        """Wait for it to exit, killing it by its pid if it lingers; close its pipes."""
        try:
            self.proc.wait(timeout=REAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            try:
                self.proc.wait(timeout=REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("agent %s: pid %d did not exit after SIGKILL", self.node, self.proc.pid)
        self._stderr_reader.join(timeout=REAP_TIMEOUT)  # its last words, then the pipe's end
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class Agents:
    """The agents of one transport, started on first use and reused; a dead one is replaced.

    Stopped by close(), and in any case when the transport is garbage-collected or this process
    exits (weakref.finalize), so no agent outlives its owner.
    """

    def __init__(self, start: Callable[[str], Agent]) -> None:
        self._start = start
        self._agents: dict[str, Agent] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop_all, self._agents)

    def get(self, node: str) -> Agent:
        with self._lock:
            agent = self._agents.get(node)
            if agent is None or not agent.alive:
                if agent is not None:
                    agent.stop()  # reap the dead one
                agent = self._agents[node] = self._start(node)
            return agent

    def call(self, node: str, op: str, payload: Payload | None, timeout: float) -> Payload:
        agent = self.get(node)
        with agent.lock:
            return agent.request(op, payload, timeout)

    def close(self) -> None:
        with self._lock:
            _stop_all(self._agents)


def _stop_all(agents: dict[str, Agent]) -> None:
    # Every agent is told first, then each reaped: they wind down side by side (a Python agent
    # takes a few tenths of a second to exit), not one after the other.
    for agent in list(agents.values()):
        agent.hang_up()
    for agent in list(agents.values()):
        agent.reap()
    agents.clear()
