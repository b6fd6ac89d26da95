"""A SoftHSM2 token store of one's own (a node's, or the backup's) and a token in it.

softhsm2-util prompts for the PINs when they are not on its command line; we
answer the prompts with pexpect so the PINs never appear in argv.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pexpect

from duo_ods.errors import NodeError
from duo_ods.process import run
from duo_ods.render.engine import render, write_atomic


def write_softhsm_conf(conf: Path, tokendir: Path, owner: str) -> None:
    tokendir.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = render("softhsm2.conf.j2", {"node": owner, "tokendir": str(tokendir)})
    write_atomic(conf, text, mode=0o644)


def token_exists(conf: Path, label: str) -> bool:
    out = run(["softhsm2-util", "--show-slots"], env={"SOFTHSM2_CONF": str(conf)}, timeout=30).stdout
    return any(line.strip() == f"Label:            {label}" for line in out.splitlines())


def init_token(conf: Path, label: str, pin: str, so_pin: str, owner: str) -> bool:
    """Initialise the token unless it exists; True when it was made now."""
    if token_exists(conf, label):
        return False
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    child = pexpect.spawn(
        "softhsm2-util", ["--init-token", "--free", "--label", label], env=env, encoding="utf-8", timeout=30
    )
    try:
        for prompt, secret in (
            ("enter SO PIN", so_pin),
            ("reenter SO PIN", so_pin),
            ("enter user PIN", pin),
            ("reenter user PIN", pin),
        ):
            child.expect(prompt)
            child.sendline(secret)
        child.expect(pexpect.EOF)
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        raise NodeError(f"{owner}: softhsm2-util did not initialise token {label}") from exc
    finally:
        child.close()
    if child.exitstatus != 0 or not token_exists(conf, label):
        raise NodeError(f"{owner}: token {label} was not created")
    return True


# SoftHSM 2's file object store: token.object is an 8-byte generation, then attribute records
# (type, kind, [length,] value; big-endian u64s). The token label is CKA_OS_TOKENLABEL, a byte string.
_CKA_OS_TOKENLABEL = 0x80005349
_BYTE_STRING = 3


def token_object_label(data: bytes) -> str | None:
    """The label in a SoftHSM token.object (None when it holds none)."""
    marker = struct.pack(">QQ", _CKA_OS_TOKENLABEL, _BYTE_STRING)
    at = data.find(marker)
    if at < 0 or len(data) < at + 24:
        return None
    (length,) = struct.unpack_from(">Q", data, at + 16)
    value = data[at + 24 : at + 24 + length]
    return value.decode("utf-8", errors="replace").rstrip(" \0") if len(value) == length else None


def token_labels(tokendir: Path) -> frozenset[str]:
    """The labels of the tokens in a SoftHSM token directory, read from their files.

    Not through softhsm2-util --show-slots: that rewrites every token's `generation` file, so a
    look would change what it looks at (node init's second run must change nothing).
    """
    labels = set()
    for token_object in sorted(tokendir.glob("*/token.object")):
        label = token_object_label(token_object.read_bytes())
        if label is not None:
            labels.add(label)
    return frozenset(labels)
