"""A call that meets an agent another thread's timed-out call just killed (its stdin closed) fails
with the transport's one line, not a ValueError traceback. Seen in the docker/ smoke test: `check`
asks each node for its zones and its key states at once; on a loaded machine one ask timed out over
ssh, and the other then wrote to the killed agent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from duo_ods.errors import TransportError
from duo_ods.transport.agent import Agent, _stop_all


def test_a_request_to_an_agent_killed_meanwhile_is_a_transport_error() -> None:
    agent = Agent("b", ["sh", "-c", "read -r line; sleep 30"], "ssh 192.0.2.12")
    killed = threading.Event()

    def first() -> None:
        with agent.lock, pytest.raises(TransportError, match="did not answer within"):
            agent.request("status", None, 0.5)  # times out: kill() closes the agent's stdin
        killed.set()

    thread = threading.Thread(target=first)
    thread.start()
    thread.join(timeout=30)
    assert killed.is_set() and not agent.alive
    with agent.lock, pytest.raises(TransportError, match="node b: status failed"):
        agent.request("status", None, 0.5)


def test_agents_are_told_to_stop_at_once_and_then_reaped(tmp_path: Path) -> None:
    """Every agent hears its end of input before the first one is waited for, so they wind down side
    by side. Each stand-in leaves a flag at its end of input and exits once all three flags are there
    (or after 8 s): told one after the other, the first would wait its 8 s."""
    flags = " ".join(str(tmp_path / f) for f in ("a", "b", "backup"))
    script = (
        f"cat >/dev/null; touch {tmp_path}/$0; "
        f"for i in $(seq 80); do ls {flags} >/dev/null 2>&1 && exit 0; sleep 0.1; done"
    )
    agents = {n: Agent(n, ["sh", "-c", script, n], "local") for n in ("a", "b", "backup")}
    started = time.monotonic()
    _stop_all(agents)
    assert agents == {}
    assert time.monotonic() - started < 6.0  # not one agent's 8 s wait
