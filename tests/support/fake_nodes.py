"""The one fake of the node protocol for unit tests of orchestration logic.

A Transport whose targets answer from handlers bound to operations of the real table:
each request is validated with the request type a real node uses, and each reply goes back
through the real NodeClient, so a fake can only say what a node could say. The real path
(real enforcers, HSMs, signers) is in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duo_ods.errors import NodeError
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.fields import Message
from duo_ods.protocol.ops import TABLE, Op, Rep, Req


class FakeNodes:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[str, Any], Message]] = {}
        self.calls: list[tuple[str, Op[Any, Any]]] = []
        self.fail: set[tuple[str, Op[Any, Any]]] = set()  # (target, op) that fail with a NodeError

    def on(self, op: Op[Req, Rep], handler: Callable[[str, Req], Rep]) -> None:
        self.handlers[op.name] = handler

    def call(
        self, node: str, op: str, payload: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """The Transport side: JSON data in, JSON data out, as a real node answers."""
        declared = TABLE[op]
        self.calls.append((node, declared))
        if (node, declared) in self.fail:
            raise NodeError(f"node {node}: {op} failed")
        if op not in self.handlers:
            raise AssertionError(f"the fake has no handler for {op}")
        request = declared.request.model_validate(payload or {})
        reply: dict[str, Any] = self.handlers[op](node, request).model_dump(mode="json")
        return reply

    @property
    def client(self) -> NodeClient:
        return NodeClient(self)

    def ops_called(self) -> list[Op[Any, Any]]:
        return [op for _, op in self.calls]
