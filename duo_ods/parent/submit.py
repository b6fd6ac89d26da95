"""Handing a DS to the parent: a configured command (DS on stdin) and/or an RFC 2136 UPDATE with TSIG."""

from __future__ import annotations

import os
import subprocess
from typing import Literal

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.update
from dns.rdtypes.ANY.DS import DS

from duo_ods.dns.tsig import read_tsig_key
from duo_ods.errors import DuoError
from duo_ods.parent.config import Parent

SubmitAction = Literal["add", "remove"]
COMMAND_TIMEOUT = 120.0  # seconds a submit command may take
UPDATE_TIMEOUT = 10.0


class SubmitError(DuoError):
    """The parent was not told (the command failed, or the UPDATE was refused)."""


def ds_text(zone: str, ds: DS) -> str:
    return f"{zone}. IN DS {ds.to_text()}" if zone != "." else f". IN DS {ds.to_text()}"


def submit(parent: Parent, action: SubmitAction, keytag: int, ds: DS) -> list[str]:
    """Tell the parent by every configured way; what was done, one line each. Raises SubmitError."""
    done: list[str] = []
    if parent.submit_command:
        run_command(parent, action, keytag, ds)
        done.append(f"{parent.submit_command[0]} ({action})")
    if parent.update_server is not None:
        send_update(parent, action, ds)
        done.append(f"UPDATE to {parent.update_server[0]} port {parent.update_server[1]} ({action})")
    return done


def run_command(parent: Parent, action: SubmitAction, keytag: int, ds: DS) -> None:
    env = {**os.environ, "ODS_DUO_ZONE": parent.zone, "ODS_DUO_ACTION": action, "ODS_DUO_KEYTAG": str(keytag)}
    try:
        proc = subprocess.run(
            parent.submit_command, input=ds_text(parent.zone, ds) + "\n", env=env, capture_output=True,
            text=True, timeout=COMMAND_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubmitError(f"submit command {parent.submit_command[0]}: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SubmitError(f"submit command {parent.submit_command[0]} exited {proc.returncode}: {tail[0]}")


def send_update(parent: Parent, action: SubmitAction, ds: DS) -> None:
    """One UPDATE for the parent zone: add the DS, or delete exactly that DS."""
    assert parent.update_server is not None and parent.tsig_key_file is not None
    key = read_tsig_key(parent.tsig_key_file)
    update = dns.update.UpdateMessage(
        dns.name.from_text(parent.parent_zone), keyring=key.keyring(), keyname=dns.name.from_text(key.name),
        keyalgorithm=dns.name.from_text(key.algorithm),
    )  # fmt: skip
    owner = dns.name.from_text(parent.zone)
    if action == "add":
        update.add(owner, parent.ds_ttl, ds)
    else:
        update.delete(owner, ds)
    host, port = parent.update_server
    try:
        reply = dns.query.tcp(update, host, port=port, timeout=UPDATE_TIMEOUT)
    except (dns.exception.DNSException, OSError) as exc:
        raise SubmitError(f"UPDATE to {host} port {port}: {type(exc).__name__}: {exc}") from None
    if reply.rcode() != dns.rcode.NOERROR:
        raise SubmitError(f"UPDATE to {host} port {port}: {dns.rcode.to_text(reply.rcode())}")
