"""The forced command: only `ods-duo --config CONF node op OP --node N`, nothing else."""

import shlex

import pytest

from duo_ods.transport.forced import RefusedCommand, Request, parse_request
from duo_ods.transport.ssh import SshTransport
from tests.unit.transport.test_ssh import target

CONF = "/etc/ods-duo/duo.toml"
OPS = {"status", "key-unwrap", "hsm-list"}
NODES = {"a", "b"}


def parse(original: str | None, only_node: str | None = None) -> Request:
    return parse_request(original, CONF, OPS, NODES, only_node)


@pytest.mark.parametrize("program", ["ods-duo", "/usr/local/bin/ods-duo", "/opt/duo/.venv/bin/ods-duo"])
def test_accepts_the_one_shape(program: str) -> None:
    assert parse(f"{program} --config {CONF} node op key-unwrap --node b") == Request("key-unwrap", "b")


def test_accepts_what_the_ssh_transport_sends() -> None:
    """The client's quoting and the server's parsing agree, even for a config path with a space."""
    transport = SshTransport(target(remote_config="/etc/ods duo/duo.toml"))
    sent = transport.remote_command("a")
    assert parse_request(sent, "/etc/ods duo/duo.toml", OPS, NODES) == Request(None, "a")


def test_accepts_a_session() -> None:
    assert parse(f"ods-duo --config {CONF} node serve --node b") == Request(None, "b")


@pytest.mark.parametrize(
    ("original", "reason"),
    [
        (None, "no command given"),
        ("", "no command given"),
        ("bash", "is not `ods-duo --config PATH node op OPERATION --node NODE` or"),
        (f"ods-duo --config {CONF} node op status --node a; rm -rf /", "is not `ods-duo"),
        (f"ods-duo --config {CONF} node op status --node 'a; id'", "no node"),
        (f"ods-duo --config {CONF} node op status --node a -v", "is not `ods-duo"),
        (f"ods-duo --config {CONF} lab down --dir / --node a", "is not `ods-duo"),
        (f"ods-duo --config {CONF} node init --node a x", "is not `ods-duo"),
        (f"sh --config {CONF} node op status --node a", "is not `ods-duo"),
        ("ods-duo --config /tmp/evil.toml node op status --node a", "this key may only use /etc/ods-duo"),
        (f"ods-duo --config {CONF} node op stop-everything --node a", "unknown operation 'stop-everything'"),
        (f"ods-duo --config {CONF} node op status --node backup", "backup store lives with the controller"),
        (f"ods-duo --config {CONF} node op status --node c", "no node 'c'"),
        (f"ods-duo --config {CONF} node op status --node 'a", "cannot parse"),
    ],
)
def test_refuses_everything_else(original: str | None, reason: str) -> None:
    with pytest.raises(RefusedCommand, match=reason.replace("(", r"\(")) as exc:
        parse(original)
    assert "\n" not in str(exc.value)


def test_only_node() -> None:
    assert parse(f"ods-duo --config {CONF} node op status --node a", only_node="a").node == "a"
    with pytest.raises(RefusedCommand, match="only reach node a, not 'b'"):
        parse(f"ods-duo --config {CONF} node op status --node b", only_node="a")


def test_long_input_is_cut_short_in_the_message() -> None:
    with pytest.raises(RefusedCommand) as exc:
        parse("x" * 5000)
    assert len(str(exc.value)) < 300


def test_quoting_cannot_smuggle_words() -> None:
    """A quoted word stays one word: an operation name with spaces is unknown, not split."""
    original = " ".join(
        shlex.quote(w) for w in ["ods-duo", "--config", CONF, "node", "op", "status --node a", "--node", "a"]
    )
    with pytest.raises(RefusedCommand, match="unknown operation"):
        parse(original)
