"""A call that meets an agent another thread's timed-out call just killed (its stdin closed) fails
with the transport's one line, not a ValueError traceback. Seen in the docker/ smoke test: `check`
asks each node for its zones and its key states at once; on a loaded machine one ask timed out over
ssh, and the other then wrote to the killed agent."""

from __future__ import annotations

import threading

import pytest

from duo_ods.errors import TransportError
from duo_ods.transport.agent import Agent


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
