"""How the controller reaches a node: one operation, JSON in, JSON out.

Every node-local action goes through Transport.call, whatever carries it
(a local subprocess in the lab, ssh between machines), so the lab and the
tests exercise the same path a real deployment does.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from duo_ods import errors

Payload = dict[str, Any]


class Transport(Protocol):
    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        """Run `op` on `node`; `timeout` (seconds) instead of the transport's own, for callers that
        must not wait long (check, monitoring)."""

    def close(self) -> None:
        """Stop whatever the transport keeps running (its agents); calls after this start anew."""


# Error kinds a node may report; anything else arrives as a TransportError.
_KINDS: dict[str, type[errors.DuoError]] = {
    cls.__name__: cls
    for cls in (
        errors.NodeError,
        errors.CommandError,
        errors.ConfigError,
        errors.RenderError,
        errors.ZoneFileError,
        errors.HsmError,
        errors.DuoError,
    )
}


def encode_reply(result: Payload | None = None, error: errors.DuoError | None = None) -> str:
    if error is not None:
        return json.dumps({"ok": False, "kind": type(error).__name__, "error": str(error)})
    return json.dumps({"ok": True, "result": result})


def decode_reply(node: str, op: str, text: str) -> Payload:
    """Turn a node's reply back into a result, or raise the error it reported."""
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        raise errors.TransportError(f"node {node}: {op}: reply is not JSON: {text[:200]!r}") from None
    if not isinstance(reply, dict) or "ok" not in reply:
        raise errors.TransportError(f"node {node}: {op}: malformed reply")
    if reply["ok"]:
        result = reply.get("result")
        return result if isinstance(result, dict) else {}
    message = str(reply.get("error", "unknown error"))
    kind = _KINDS.get(str(reply.get("kind")), errors.TransportError)
    if kind is errors.CommandError or kind is errors.ConfigError:
        # These carry structured fields we cannot rebuild from a sentence.
        raise errors.NodeError(message)
    raise kind(message)
