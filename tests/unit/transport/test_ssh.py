"""The ssh transport without a network: its command line, its errors and its timeout (fake ssh).

The fake ssh programs play the node's agent: one JSON request line in, one reply line out."""

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from duo_ods.config.resolve import SshTarget
from duo_ods.errors import HsmError, TransportError
from duo_ods.transport.base import Payload, encode_reply
from duo_ods.transport.ssh import RoutingTransport, SshTransport


def target(**changes: Any) -> SshTarget:
    values: dict[str, Any] = {
        "host": "192.0.2.12",
        "port": 22,
        "user": "root",
        "identity_file": Path("/etc/ods-duo/ssh/id_ed25519"),
        "known_hosts_file": Path("/etc/ods-duo/ssh/known_hosts"),
        "remote_command": "ods-duo",
        "remote_config": "/etc/ods-duo/duo.toml",
        "connect_timeout": 10,
        "op_timeout": 300,
    }
    values.update(changes)
    return SshTarget(**values)


def options(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "-o")


def test_argv_checks_host_keys_and_never_prompts() -> None:
    argv = SshTransport(target(port=2222, user="duo")).argv("b")
    opts = options(argv)
    assert argv[0] == "ssh"
    assert opts["BatchMode"] == "yes"
    assert opts["StrictHostKeyChecking"] == "yes"
    assert opts["UserKnownHostsFile"] == "/etc/ods-duo/ssh/known_hosts"
    assert opts["GlobalKnownHostsFile"] == "/dev/null"
    assert opts["IdentityFile"] == "/etc/ods-duo/ssh/id_ed25519"
    assert opts["IdentitiesOnly"] == "yes"
    assert opts["ConnectTimeout"] == "10"
    assert int(opts["ServerAliveInterval"]) * int(opts["ServerAliveCountMax"]) <= 10
    # the destination comes after `--`, so nothing after it is read as an ssh option
    assert argv[-7:-1] == ["-p", "2222", "-l", "duo", "--", "192.0.2.12"]
    assert argv[-1] == "ods-duo --config /etc/ods-duo/duo.toml node serve --node b"


def test_remote_words_are_quoted_for_the_remote_shell() -> None:
    transport = SshTransport(
        target(remote_command="/opt/ods duo/bin/ods-duo", remote_config="/etc/x y/duo.toml")
    )
    assert transport.remote_command("a") == (
        "'/opt/ods duo/bin/ods-duo' --config '/etc/x y/duo.toml' node serve --node a"
    )


def call_once(transport: SshTransport, node: str, op: str) -> Payload:
    """One operation, then the transport closed (its agent reaped), whatever happened."""
    try:
        return transport.call(node, op)
    finally:
        transport.close()


def fake_ssh(tmp_path: Path, body: str) -> str:
    """A stand-in for the ssh program: a shell script that ignores its arguments."""
    path = tmp_path / "fake-ssh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_requests_on_stdin_replies_on_stdout_over_one_connection(tmp_path: Path) -> None:
    seen = tmp_path / "stdin"
    starts = tmp_path / "starts"
    reply = encode_reply({"keys": ["abc"]})
    agent = f"while read -r line; do echo \"$line\" >> {seen}; echo '{reply}'; done"
    ssh = fake_ssh(tmp_path, f"echo x >> {starts}; {agent}")
    transport = SshTransport(target(), ssh_program=ssh)
    assert transport.call("a", "hsm-list", {"locator": "00ff"}) == {"keys": ["abc"]}
    assert transport.call("a", "status") == {"keys": ["abc"]}
    transport.close()
    requests = [json.loads(line) for line in seen.read_text().splitlines()]
    assert requests == [{"op": "hsm-list", "payload": {"locator": "00ff"}}, {"op": "status", "payload": {}}]
    assert starts.read_text() == "x\n", "one connection for both operations"


def test_argv_carries_no_payload(tmp_path: Path) -> None:
    seen = tmp_path / "argv"
    ssh = fake_ssh(tmp_path, f"printf '%s\\n' \"$@\" > {seen}; read -r line; echo '{encode_reply({})}'")
    secret = "wrapped-secret-blob"
    transport = SshTransport(target(), ssh_program=ssh)
    transport.call("a", "key-unwrap", {"wrapped": secret})
    transport.close()
    assert "node serve --node a" in seen.read_text()
    assert secret not in seen.read_text()


def test_node_errors_keep_their_kind(tmp_path: Path) -> None:
    reply = encode_reply(error=HsmError("CKR_KEY_HANDLE_INVALID"))
    ssh = fake_ssh(tmp_path, f"read -r line; echo '{reply}'; exit 1")
    with pytest.raises(HsmError, match="CKR_KEY_HANDLE_INVALID"):
        call_once(SshTransport(target(), ssh_program=ssh), "a", "key-wrap")


def test_unreachable_is_one_line_with_node_host_and_ssh_reason(tmp_path: Path) -> None:
    ssh = fake_ssh(
        tmp_path,
        'echo "Warning: something" >&2; echo "ssh: connect to host 192.0.2.12 port 22: '
        'Connection refused" >&2; exit 255',
    )
    with pytest.raises(TransportError) as exc:
        call_once(SshTransport(target(), ssh_program=ssh), "b", "status")
    assert str(exc.value) == (
        "node b: status: cannot reach it (ssh 192.0.2.12): "
        "ssh: connect to host 192.0.2.12 port 22: Connection refused"
    )


def test_remote_failure_without_reply(tmp_path: Path) -> None:
    ssh = fake_ssh(tmp_path, 'echo "ods-duo serve-ssh: refused: unknown operation" >&2; exit 1')
    with pytest.raises(
        TransportError, match=r"^node b: status failed \(ssh 192.0.2.12 port 2222\): ods-duo "
    ):
        call_once(SshTransport(target(port=2222), ssh_program=ssh), "b", "status")


def test_no_answer_within_op_timeout_kills_ssh(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    ssh = fake_ssh(tmp_path, f"echo $$ > {pid_file}; exec sleep 30")  # connects, never answers
    start = time.monotonic()
    with pytest.raises(
        TransportError, match=r"^node b: status did not answer within 1 s \(ssh 192.0.2.12\)$"
    ):
        call_once(SshTransport(target(op_timeout=1, connect_timeout=1), ssh_program=ssh), "b", "status")
    assert time.monotonic() - start < 5
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(pid, 0)


def test_missing_ssh_program() -> None:
    with pytest.raises(TransportError, match="cannot run /nonexistent/ssh"):
        SshTransport(target(), ssh_program="/nonexistent/ssh").call("a", "status")


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str]] = []

    def call(
        self, node: str, op: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Payload:
        self.calls.append((node, op))
        return {"by": self.name}


def test_routing_backup_stays_local() -> None:
    local, ssh_b = Recorder("local"), Recorder("ssh-b")
    routing = RoutingTransport(local, {"b": ssh_b})
    assert routing.call("a", "status") == {"by": "local"}
    assert routing.call("b", "status") == {"by": "ssh-b"}
    assert routing.call("backup", "bundle-list") == {"by": "local"}
    assert ssh_b.calls == [("b", "status")]
    with pytest.raises(ValueError, match="controller-local"):
        RoutingTransport(local, {"backup": ssh_b})
