"""Token labels read from SoftHSM's files (a look that changes nothing)."""

import struct
from pathlib import Path

from duo_ods.node.token import token_labels, token_object_label


def token_object(label: str) -> bytes:
    """The start of a SoftHSM 2.6 token.object as seen on disk: generation, then the label record."""
    padded = label.encode().ljust(32)
    serial = struct.pack(">QQQ", 0x8000534A, 3, 16) + b"c797183fffde06dd"
    return struct.pack(">Q", 0x15) + struct.pack(">QQQ", 0x80005349, 3, 32) + padded + serial


def test_label_from_token_object() -> None:
    assert token_object_label(token_object("SYS-A")) == "SYS-A"
    assert token_object_label(token_object("a label with spaces")) == "a label with spaces"


def test_no_label_or_truncated() -> None:
    assert token_object_label(b"\0" * 64) is None
    assert token_object_label(token_object("SYS-A")[:40]) is None


def test_labels_of_a_token_directory(tmp_path: Path) -> None:
    for name, label in (("t1", "DUO-A"), ("t2", "DUO-BACKUP")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "token.object").write_bytes(token_object(label))
    (tmp_path / "stray").mkdir()
    assert token_labels(tmp_path) == frozenset({"DUO-A", "DUO-BACKUP"})
