"""Scratch SoftHSM tokens for the HSM-layer tests, and the KEK hand-over as the duo does it.

All tokens of a test module live in ONE temporary token directory (one softhsm2.conf), so one
process can hold sessions on A, B and the backup token at once and copy keys between them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from duo_ods.hsm import kek
from duo_ods.hsm._p11 import Session
from duo_ods.hsm.token import open_session, open_so_session

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234-user"
SO_PIN = "5678-so"
KEK = "duo-kek"
TRANSPORT = "duo-transport"
HOLDER = "BACKUP"  # the one token that makes the KEK and hands it on


@dataclass(frozen=True)
class Hsm:
    conf: Path
    tokendir: Path


def write_conf(root: Path) -> Hsm:
    tokendir = root / "tokens"
    tokendir.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return Hsm(conf=conf, tokendir=tokendir)


def session(label: str) -> AbstractContextManager[Session]:
    return open_session(MODULE, label, PIN)


def so_session(label: str) -> AbstractContextManager[Session]:
    return open_so_session(MODULE, label, SO_PIN)


def pin_transport_key(
    receiver: str, *, holder: bool = False, transport: str = TRANSPORT, holder_token: str = HOLDER
) -> str:
    """The receiver makes a transport key; the holder's SO pins it after "confirming" its
    fingerprint (read here from the receiving token itself, as an operator would compare it).
    Returns the trusted key's label in the holder token."""
    with session(receiver) as r:
        spki = kek.make_transport_key(r, transport, holder=holder)
    trusted = f"pin-{receiver}-{transport}"
    with so_session(holder_token) as so:
        kek.import_trusted_transport_key(so, trusted, spki, kek.spki_fingerprint(spki))
    return trusted


def hand_over_kek(receiver: str, kek_label: str = KEK, holder_token: str = HOLDER, **unwrap: bool) -> str:
    """The holder's KEK into `receiver` through a pinned one-time transport key; its fingerprint."""
    trusted = pin_transport_key(receiver, holder_token=holder_token)
    with session(holder_token) as bk, session(receiver) as r:
        blob = kek.wrap_kek_to_trusted(bk, kek_label, trusted)
        kek.unwrap_kek(r, blob, TRANSPORT, kek_label, **unwrap)
        kek.delete_transport_key(r, TRANSPORT)
        kek.delete_trusted_transport_key(bk, trusted)
        return kek.kek_fingerprint(r, kek_label) if unwrap.get("wrap", True) else ""
