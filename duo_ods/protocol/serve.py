"""The node side of the protocol: one request in, through the table, to its handler; one reply out.

Handlers are bound to operations (`bind`), never to names: a handler's request and reply types
are the operation's, so mypy checks both ends. The request is validated here, before any
handler runs (invariant 8: the node trusts nothing from the wire).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar

from pydantic import ValidationError

from duo_ods import faults
from duo_ods.config.resolve import Backup, Duo, Node
from duo_ods.errors import DuoError, NodeError
from duo_ods.protocol.client import describe
from duo_ods.protocol.fields import MAX_PAYLOAD
from duo_ods.protocol.ops import TABLE, Op, Rep, Req

Target = TypeVar("Target", Node, Backup)


class RequestError(DuoError):
    """A request the node refuses before any handler runs: unknown, misplaced or malformed."""


@dataclass(frozen=True)
class Bound(Generic[Req, Rep, Target]):
    op: Op[Req, Rep]
    handler: Callable[[Duo, Target, Req], Rep]

    def run(self, duo: Duo, target: Target, payload: Any) -> Rep:
        try:
            request = self.op.request.model_validate(payload)
        except ValidationError as exc:
            raise RequestError(f"{self.op.name}: bad request: {describe(exc)}") from None
        faults.point("op", f"{self.op.name}:before")
        try:
            reply = self.handler(duo, target, request)
        except ValidationError as exc:  # a bug on this side, but the caller still gets one line
            raise NodeError(f"{self.op.name}: the node could not build its reply: {describe(exc)}") from exc
        faults.point("op", f"{self.op.name}:after")
        return reply


def bind(op: Op[Req, Rep], handler: Callable[[Duo, Target, Req], Rep]) -> Bound[Req, Rep, Target]:
    return Bound(op, handler)


def handlers(*bound: Bound[Any, Any, Target]) -> dict[str, Bound[Any, Any, Target]]:
    table = {b.op.name: b for b in bound}
    if len(table) != len(bound):
        raise ValueError("an operation is bound twice")
    return table


_DISCARD_CHUNK = 64 * 1024  # what a refused line is skipped by: memory stays bounded by this


def read_request_line(stream: BinaryIO, limit: int = MAX_PAYLOAD) -> bytes | None:
    """The next request line of an agent's input, None at its end. Reads at most `limit` + 1
    bytes at once: a longer line is refused (RequestError) without being held whole, and the
    rest of it is skipped in small chunks, so the next request still starts on its own line."""
    line = stream.readline(limit + 1)
    if not line:
        return None
    if line.endswith(b"\n"):
        return line[:-1]  # at most `limit` bytes before the newline
    if len(line) <= limit:
        return line  # the last line, without a newline
    while (rest := stream.readline(_DISCARD_CHUNK)) and not rest.endswith(b"\n"):
        pass
    raise RequestError(f"request larger than {limit} bytes")


def read_payload(raw: str | bytes, limit: int = MAX_PAYLOAD) -> Any:
    if len(raw) > limit:
        raise RequestError(f"request larger than {limit} bytes")
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError as exc:  # not JSON, or bytes that are not UTF-8 (UnicodeDecodeError)
        raise RequestError(f"payload is not JSON: {exc}") from None


def dispatch(
    duo: Duo,
    target_name: str,
    op_name: str,
    payload: Any,
    *,
    node_handlers: Mapping[str, Bound[Any, Any, Node]],
    backup_handlers: Mapping[str, Bound[Any, Any, Backup]],
) -> dict[str, Any]:
    """Run one operation for the target ('backup' or a node of this config); the reply as JSON data."""
    op = TABLE.get(op_name)
    if op is None:
        raise RequestError(f"{target_name}: no operation {op_name!r}")
    if not op.runs_on(target_name):
        raise RequestError(f"{target_name}: operation {op_name} does not run there")
    if target_name == "backup":
        reply = backup_handlers[op_name].run(duo, duo.backup, payload)
    else:
        reply = node_handlers[op_name].run(duo, duo.node(target_name), payload)
    data: dict[str, Any] = reply.model_dump(mode="json")
    return data
