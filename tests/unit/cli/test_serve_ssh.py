"""`ods-duo node serve-ssh` as sshd runs it: a refusal is one line on stderr, exit 1, nothing on stdout."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from duo_ods.process import python_module
from tests.unit.config.test_model import GOOD


def serve(
    tmp_path: Path, original: str | None, *extra: str, payload: str = "{}"
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "duo.toml"
    config.write_text(GOOD)
    env = {k: v for k, v in os.environ.items() if k != "SSH_ORIGINAL_COMMAND"}
    if original is not None:
        env["SSH_ORIGINAL_COMMAND"] = original.replace("CONF", str(config))
    return subprocess.run(
        [*python_module("duo_ods"), "--config", str(config), "node", "serve-ssh", *extra],
        env=env, input=payload, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("original", "reason"),
    [
        (None, "no command given"),
        ("sh -c id", "is not `ods-duo --config PATH node op OPERATION --node NODE`"),
        ("ods-duo --config /etc/other.toml node op status --node a", "this key may only use"),
        ("ods-duo --config CONF node op no-such-op --node a", "unknown operation 'no-such-op'"),
        ("ods-duo --config CONF node op status --node backup", "lives with the controller"),
    ],
)
def test_refusals(tmp_path: Path, original: str | None, reason: str) -> None:
    proc = serve(tmp_path, original)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("ods-duo serve-ssh: refused: ") and reason in line


def test_only_node(tmp_path: Path) -> None:
    proc = serve(tmp_path, "ods-duo --config CONF node op status --node b", "--node", "a")
    assert proc.returncode == 1
    assert proc.stderr == "ods-duo serve-ssh: refused: this key may only reach node a, not 'b'\n"


def test_accepted_request_runs_the_operation(tmp_path: Path) -> None:
    """Accepted: the operation runs and answers in the transport's JSON (here: node a was never started)."""
    proc = serve(tmp_path, "/opt/x/bin/ods-duo --config CONF node op zone-list --node a")
    assert "refused" not in proc.stderr
    assert json.loads(proc.stdout) == {
        "ok": False, "kind": "NodeError", "error": "node a: enforcer is not running"
    }  # fmt: skip


def test_a_zone_name_that_is_a_path_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Zone names from the wire are checked on the node: `../../x` never becomes a path."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    traversal = "../" * 12 + str(victim).lstrip("/")
    for op, payload in [
        ("zone-remove", {"zone": traversal}),
        ("zone-add", {"zone": traversal, "text": "x"}),
        ("zone-update", {"zone": traversal, "text": "x"}),
    ]:
        proc = serve(tmp_path, f"ods-duo --config CONF node op {op} --node a", payload=json.dumps(payload))
        reply = json.loads(proc.stdout)
        assert proc.returncode == 1 and reply["ok"] is False
        assert reply["error"].startswith(f"{op}: bad request: zone: ")
    assert victim.read_text() == "keep me"


def test_a_read_only_key_runs_listings_and_nothing_that_changes_a_node(tmp_path: Path) -> None:
    proc = serve(tmp_path, "ods-duo --config CONF node op zone-remove --node a", "--read-only")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "ods-duo serve-ssh: refused: unknown operation 'zone-remove'\n"
    proc = serve(tmp_path, "ods-duo --config CONF node op zone-list --node a", "--read-only")
    assert "refused" not in proc.stderr and json.loads(proc.stdout)["ok"] is False  # ran: no enforcer here
