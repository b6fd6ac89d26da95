"""The node protocol: one table, every operation handled where it runs, names spelled once, and a
node that refuses malformed requests before any handler runs (invariant 8)."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import pytest

from duo_ods.backup.ops import BACKUP_HANDLERS
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import TransportError, ZoneFileError
from duo_ods.node.handlers import NODE_HANDLERS
from duo_ods.protocol import ops as P
from duo_ods.protocol.serve import RequestError, dispatch, read_payload, read_request_line
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

PACKAGE = Path(__file__).resolve().parents[3] / "duo_ods"
PROTOCOL = PACKAGE / "protocol" / "ops.py"


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def test_every_operation_has_a_handler_where_it_runs_and_nowhere_else() -> None:
    for name, op in P.TABLE.items():
        assert (name in NODE_HANDLERS) == op.runs_on("a"), name
        assert (name in BACKUP_HANDLERS) == op.runs_on("backup"), name
    for table in (NODE_HANDLERS, BACKUP_HANDLERS):
        for name, bound in table.items():
            assert bound.op is P.TABLE[name]


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_operation_names_are_spelled_only_in_the_protocol_module() -> None:
    """Callers name operations by their Op (P.ZONE_LIST), never by a string: a typo is a mypy error."""
    names = set(P.TABLE)
    distinctive = {n for n in names if "-" in n}  # plain words (init, start, status) are also other things
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PROTOCOL:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in distinctive:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
            # Any operation name (plain words too) handed to a call as a string.
            called = (
                node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else ""
            )
            if isinstance(node, ast.Call) and called in {"call", "step", "on_each"}:
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in names:
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {arg.value!r}")
    assert found == []


@pytest.mark.parametrize(
    ("op", "payload", "reason"),
    [
        ("zone-add", {"zone": "../../../tmp/x", "text": "x"}, "zone:"),
        ("zone-add", {"zone": "Example.Test", "text": "x"}, "canonical form"),
        ("zone-remove", {"zone": "a/b"}, "zone:"),
        ("zone-update", {"zone": "ok.test", "text": "x", "serial": 2**32}, "serial"),
        ("zone-add", {"zone": "ok.test", "text": "x", "extra": 1}, "extra"),
        ("key-delete", {"locator": "../../etc/passwd"}, "locator"),
        ("key-delete", {"locator": "AB" * 16}, "locator"),
        (
            "key-unwrap",
            {"locator": "ab" * 16, "algorithm": 13, "bits": 256, "public": "!!", "wrapped": "AA=="},
            "not base64",
        ),
        (
            "key-import",
            {
                "zone": "ok.test",
                "locator": "ab" * 16,
                "role": "KSK; rm",
                "algorithm": 13,
                "bits": 256,
                "inception": 1,
            },
            "role",
        ),
        ("key-ds", {"zone": "ok.test", "keytag": 70000, "action": "seen"}, "keytag"),
        ("key-ds", {"zone": "ok.test", "keytag": 1, "action": "forget"}, "action"),
    ],
)
def test_a_node_refuses_a_malformed_request_before_any_handler(
    duo: Duo, op: str, payload: dict[str, Any], reason: str
) -> None:
    # The real handlers: each would touch files or the HSM, so reaching one would fail otherwise.
    with pytest.raises(RequestError, match=f"{op}: bad request: .*{reason}"):
        dispatch(duo, "a", op, payload, node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS)


def test_a_node_refuses_unknown_and_misplaced_operations(duo: Duo) -> None:
    with pytest.raises(RequestError, match="no operation 'rm-rf'"):
        dispatch(duo, "a", "rm-rf", {}, node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS)
    with pytest.raises(RequestError, match="bundle-put does not run there"):
        dispatch(duo, "a", "bundle-put", {}, node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS)
    with pytest.raises(RequestError, match="key-generate does not run there"):
        dispatch(
            duo, "backup", "key-generate", {}, node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS
        )


def test_payload_limits() -> None:
    with pytest.raises(RequestError, match="not JSON"):
        read_payload("{")
    assert read_payload("") == {}
    with pytest.raises(RequestError, match="not JSON"):
        read_payload(b'{"op": "\xff"}')  # not UTF-8
    with pytest.raises(RequestError, match="larger than 4 bytes"):
        read_payload("12345", limit=4)


def test_a_request_line_is_read_with_a_bound() -> None:
    stream = io.BytesIO(b'{"op": "a"}\n\n' + b"y" * 8 + b"\n" + b"z" * 9 + b"\n" + b'{"op": "b"}')
    assert read_request_line(stream, limit=11) == b'{"op": "a"}'
    assert read_request_line(stream, limit=11) == b""
    assert read_request_line(stream, limit=8) == b"y" * 8  # exactly the limit
    with pytest.raises(RequestError, match="larger than 8 bytes"):
        read_request_line(stream, limit=8)
    assert read_request_line(stream, limit=11) == b'{"op": "b"}'  # the next request is intact
    assert read_request_line(stream, limit=11) is None


class _HugeLine:
    """A line of `size` bytes made up as it is read, then one good request; records each read's size."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.after = [b'{"op": "x"}\n']
        self.sizes: list[int] = []

    def readline(self, size: int = -1) -> bytes:
        self.sizes.append(size)
        if self.left > 0:
            n = min(size, self.left) if size > 0 else self.left
            self.left -= n
            return b"x" * n
        if self.left == 0:
            self.left = -1
            return b"\n"
        return self.after.pop(0) if self.after else b""


def test_a_huge_line_is_refused_without_being_read_whole() -> None:
    stream = _HugeLine(50 * 1024 * 1024)
    with pytest.raises(RequestError, match="larger than 1000 bytes"):
        read_request_line(stream, limit=1000)  # type: ignore[arg-type]
    assert all(0 < size <= 64 * 1024 for size in stream.sizes)  # never an unbounded read
    assert stream.sizes[0] == 1001
    assert read_request_line(stream, limit=1000) == b'{"op": "x"}'  # type: ignore[arg-type]


def test_the_client_refuses_a_reply_that_does_not_match_its_type() -> None:
    fake = FakeNodes()
    fake.on(P.KEK_STATUS, lambda n, r: P.KekStatusReply(has_kek=True, fingerprint="ab" * 16))
    assert fake.client.call("a", P.KEK_STATUS).fingerprint == "ab" * 16

    class Liar(FakeNodes):
        def call(
            self, node: str, op: str, payload: dict[str, Any] | None = None, timeout: float | None = None
        ) -> dict[str, Any]:
            return {"has_kek": ["yes"], "fingerprint": None}

    with pytest.raises(TransportError, match="node b: kek-status: malformed reply: has_kek"):
        Liar().client.call("b", P.KEK_STATUS)


def test_the_client_sends_only_the_declared_request_type() -> None:
    fake = FakeNodes()
    with pytest.raises(TypeError, match="zone-remove takes ZoneRequest"):
        fake.client.call("a", P.ZONE_REMOVE, P.LocatorRequest(locator="ab" * 16))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bundle-put does not run on a"):
        fake.client.call("a", P.BUNDLE_PUT)


@pytest.mark.parametrize(
    "text",
    [
        "not a zone",
        "$ORIGIN ok.test.\n@ 300 IN SOA ns1 h 1 2 3 4 5\n@ 300 IN NS ns1\nx.other.test. 300 IN A 192.0.2.1\n",
        "$ORIGIN ok.test.\n@ 300 IN SOA ns1 h 1 2 3 4 5\n@ 300 IN NS ns1\n"
        "@ 300 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+"
        "KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n",
    ],
)
def test_a_node_rechecks_zone_text_before_writing_anything(duo: Duo, text: str) -> None:
    with pytest.raises(ZoneFileError, match=r"node a: zone ok\.test as received"):
        dispatch(duo, "a", "zone-add", {"zone": "ok.test", "text": text},
                 node_handlers=NODE_HANDLERS, backup_handlers=BACKUP_HANDLERS)  # fmt: skip
    assert not duo.nodes["a"].paths.unsigned_zone("ok.test").exists()
