"""`kek init` journalled (issue 12): a run that failed or was killed before its commit point changed
nothing and its record is dropped; one past it is finished forward by `kek init` again, `key resume`
or the next key command, which also takes back every SO pin it recorded. Orchestration only, on the
protocol's fake; the real path with SIGKILLs at step boundaries is tests/integration/test_crash.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError
from duo_ods.keys.flow import resume_pending
from duo_ods.keys.journal import Journal, Recorder, journal_path, pending
from duo_ods.keys.kek import KEK_INIT, kek_init
from duo_ods.protocol import ops as P
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

OLD, NEW = "0" * 32, "1" * 32


class Tokens(FakeNodes):
    """The KEK in each token, the backup's retired KEKs and SO pins, the nodes' transport keys."""

    def __init__(self) -> None:
        super().__init__()
        self.kek: dict[str, str | None] = {"a": OLD, "b": OLD, "backup": OLD}
        self.retired: list[str] = []
        self.pins: set[str] = set()
        self.transport: dict[str, str] = {}  # node -> transport key fingerprint
        self.made = 0
        self.on(P.BACKUP_INIT, lambda n, r: P.BackupInitReply(dir="/b", token_created=False))
        self.on(P.KEK_STATUS, lambda n, r: P.KekStatusReply(
            has_kek=self.kek[n] is not None, fingerprint=self.kek[n],
            retired=self.retired if n == "backup" else []))  # fmt: skip
        self.on(P.KEK_GENERATE, self.generate)
        self.on(P.KEK_TRANSPORT_KEY, self.transport_key)
        self.on(P.KEK_PIN, self.pin)
        self.on(P.KEK_UNPIN, self.unpin)
        self.on(
            P.KEK_WRAP_FOR, lambda n, r: P.BlobReply(blob=base64.b64encode(str(self.kek["backup"]).encode()))
        )
        self.on(P.KEK_UNWRAP, self.unwrap)

    def generate(self, n: str, r: P.ReplaceRequest) -> P.KekGenerateReply:
        old = self.kek["backup"]
        if old is not None:
            assert r.replace
            self.retired.append(old)
        self.made += 1
        self.kek["backup"] = NEW
        return P.KekGenerateReply(fingerprint=NEW, retired=f"kek.retired.{old}" if old else None)

    def transport_key(self, n: str, r: P.Empty) -> P.TransportKeyReply:
        fingerprint = self.transport.setdefault(n, f"{len(self.transport) + 10:064x}")
        return P.TransportKeyReply(public=base64.b64encode(b"spki").decode(), fingerprint=fingerprint)

    def pin(self, n: str, r: P.KekPinRequest) -> P.LabelReply:
        self.pins.add(r.fingerprint)  # idempotent, as the backup's kek-pin is for the same key
        return P.LabelReply(label=f"pin-{r.fingerprint}")

    def unpin(self, n: str, r: P.FingerprintRequest) -> P.CountReply:
        had = r.fingerprint in self.pins
        self.pins.discard(r.fingerprint)
        return P.CountReply(count=int(had))

    def unwrap(self, n: str, r: P.KekUnwrapRequest) -> P.FingerprintReply:
        assert r.replace or self.kek[n] is None
        self.kek[n] = base64.b64decode(r.blob).decode()
        self.transport.pop(n)
        return P.FingerprintReply(fingerprint=str(self.kek[n]))


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    return load_config(tmp_path / "duo.toml")


def test_a_clean_replace_leaves_no_journal_and_no_pin(duo: Duo) -> None:
    fake = Tokens()
    result = kek_init(duo, fake.client, replace=True)
    assert result["fingerprint"] == NEW and fake.kek == {"a": NEW, "b": NEW, "backup": NEW}
    assert fake.retired == [OLD] and fake.pins == set() and pending(duo) is None


def test_a_replace_that_failed_at_node_b_is_finished_by_kek_init_again(duo: Duo) -> None:
    fake = Tokens()
    fake.fail.add(("b", P.KEK_UNWRAP))
    with pytest.raises(DuoError, match="key journal keeps this run"):
        kek_init(duo, fake.client, replace=True)
    left = pending(duo)
    assert left is not None and left.command == KEK_INIT and left.committed
    assert fake.kek == {"a": NEW, "b": OLD, "backup": NEW}
    fake.fail.clear()
    result = kek_init(duo, fake.client, replace=True)
    assert "finished the interrupted kek init --replace" in result["resumed"]
    assert fake.kek == {"a": NEW, "b": NEW, "backup": NEW}
    assert fake.made == 1, "the new KEK the failed run made is the one handed on: no third KEK"
    assert fake.pins == set() and pending(duo) is None


def test_key_resume_takes_back_the_pin_a_killed_run_left(duo: Duo) -> None:
    """Killed between the SO's pin and the hand-over (the pin is on record first)."""
    fake = Tokens()
    fake.kek["backup"] = NEW
    fake.retired = [OLD]
    fake.pins = {"f" * 64}
    details = {"replace": True, "old": OLD, "replaced": True, "steps": ["send a"], "pins": ["f" * 64]}
    Recorder(journal_path(duo), Journal(KEK_INIT, "", 0.0, committed=True, details=details))
    finished = resume_pending(duo, fake.client)
    assert finished is not None and "finished the interrupted kek init --replace" in finished.message
    assert fake.kek == {"a": NEW, "b": NEW, "backup": NEW} and fake.made == 0
    assert fake.pins == set() and pending(duo) is None


def test_a_run_killed_before_its_commit_point_is_dropped(duo: Duo) -> None:
    fake = Tokens()
    details = {"replace": True, "old": OLD, "replaced": True}
    Recorder(journal_path(duo), Journal(KEK_INIT, "", 0.0, details=details))
    finished = resume_pending(duo, fake.client)
    assert finished is not None and finished.message.startswith("undid the unfinished kek init --replace")
    assert fake.kek == {"a": OLD, "b": OLD, "backup": OLD} and fake.made == 0 and pending(duo) is None
