"""The node's sign request: ods-signer's success message with exit 1 (seen while the zone was being
signed already) counts as taken; any other failure does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.errors import CommandError
from duo_ods.node import ops
from tests.support.configs import TWO_NODES


class FakeSigner:
    """ods-signer answering every command with `stdout` and exit 1."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.commands: list[str] = []

    def run(self, command: str) -> str:
        self.commands.append(command)
        raise CommandError(["ods-signer", "-s", "sock", command], 1, self.stdout, "")


@pytest.mark.parametrize(
    ("stdout", "taken"),
    [("Zone example.test scheduled for immediate re-sign.", True), ("Zone example.test not found.", False)],
)
def test_sign_accepts_the_success_message_whatever_the_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, taken: bool
) -> None:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    node = load_config(tmp_path / "duo.toml").nodes["a"]
    fake = FakeSigner(stdout)
    monkeypatch.setattr(ops, "Signer", lambda *a, **k: fake.run)
    if taken:
        ops.sign(node, "example.test", 2026112905)
    else:
        with pytest.raises(CommandError):
            ops.sign(node, "example.test", 2026112905)
    assert fake.commands == ["sign example.test --serial 2026112905"]
