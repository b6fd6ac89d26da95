"""`backup restore --confirm NODE=FINGERPRINT`: a wiped node reached over ssh gets the KEK only once
the operator confirmed its transport key, as with `kek init --confirm` (docker/smoke.sh restores
node b of the compose duo this way). Orchestration on the protocol's fake; the real hand-over runs
in docker/smoke.sh and tests/integration."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from duo_ods.backup import restore
from duo_ods.cli import backup as backup_cli
from duo_ods.cli.main import cli
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.keys.kek import confirmer
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

KEK = "f" * 32
OFFERED = "0123456789abcdef" * 2  # node b's transport key fingerprint, as `kek offer` shows it on b
SSH_B = """
transport = "ssh"
[nodes.b.ssh]
identity_file = "ssh/id_ed25519"
known_hosts_file = "ssh/known_hosts"
"""


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    text = TWO_NODES.replace('token_label = "B"\n', 'token_label = "B"' + SSH_B)
    (tmp_path / "duo.toml").write_text(text)
    loaded = load_config(tmp_path / "duo.toml")
    assert loaded.nodes["b"].ssh is not None and loaded.nodes["a"].ssh is None
    return loaded


class Kek(FakeNodes):
    """The backup token holds the KEK; wiped node b has none and offers a transport key."""

    def __init__(self) -> None:
        super().__init__()
        self.holds: dict[str, str] = {"backup": KEK}
        self.pinned: list[str] = []
        self.on(P.KEK_STATUS, self.status)
        offer = P.TransportKeyReply(public=self.public, fingerprint=OFFERED)
        self.on(P.KEK_TRANSPORT_KEY, lambda n, r: offer)
        self.on(P.KEK_PIN, self.pin)
        self.on(P.KEK_WRAP_FOR, lambda n, r: P.BlobReply(blob=base64.b64encode(b"wrapped").decode()))
        self.on(P.KEK_UNWRAP, self.unwrap)
        self.on(P.KEK_UNPIN, lambda n, r: P.CountReply(count=1))

    public = base64.b64encode(b"rsa public key").decode()

    def status(self, node: str, r: P.KekStatusRequest) -> P.KekStatusReply:
        return P.KekStatusReply(has_kek=node in self.holds, fingerprint=self.holds.get(node))

    def pin(self, node: str, r: P.KekPinRequest) -> P.LabelReply:
        self.pinned.append(r.fingerprint)
        return P.LabelReply(label="pinned")

    def unwrap(self, node: str, r: P.KekUnwrapRequest) -> P.FingerprintReply:
        self.holds[node] = KEK
        return P.FingerprintReply(fingerprint=KEK)


def test_an_ssh_node_gets_the_kek_only_with_its_confirmed_fingerprint(duo: Duo) -> None:
    fake = Kek()
    with pytest.raises(restore.RestoreError, match=f"must be confirmed.*--confirm b={OFFERED}"):
        restore._copy_kek(duo, fake.client, "b")
    assert fake.pinned == [] and "b" not in fake.holds, "nothing pinned, nothing handed over"

    with pytest.raises(restore.RestoreError, match="not the confirmed"):
        restore._copy_kek(duo, fake.client, "b", confirmer(duo, {"b": "9" * 32}))
    assert fake.pinned == [] and "b" not in fake.holds

    assert restore._copy_kek(duo, fake.client, "b", confirmer(duo, {"b": OFFERED})) == KEK
    assert fake.pinned == [OFFERED] and fake.holds["b"] == KEK


def test_the_cli_passes_confirm_to_the_restore(
    duo: Duo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_restore(duo: Duo, client: Any, node: str, source: Any, older: bool, *, confirm: Any) -> Any:
        seen["node"] = node
        confirm("b", OFFERED)  # accepted: it is the confirmed one
        with pytest.raises(Exception, match="not the confirmed"):
            confirm("b", "9" * 32)
        seen["checked"] = True
        raise SystemExit(0)

    monkeypatch.setattr(backup_cli, "restore_node", fake_restore)
    config = str(tmp_path / "duo.toml")
    result = CliRunner().invoke(
        cli, ["--config", config, "backup", "restore", "--node", "b", "--confirm", f"b={OFFERED}"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"node": "b", "checked": True}
