"""The duo's transfer TSIG key, kept as a BIND `key` statement in a 0600 file.

The signers' addns.xml, the secondaries' named config and `ods-duo check` all
read it from there; the secret never goes on a command line or into a log.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.tsig
import dns.tsigkeyring

from duo_ods.config.resolve import Duo
from duo_ods.errors import ConfigError
from duo_ods.render.engine import render

_STATEMENT = re.compile(
    r'key\s+"(?P<name>[^"]+)"\s*\{\s*algorithm\s+(?P<alg>[\w-]+)\s*;\s*secret\s+"(?P<secret>[A-Za-z0-9+/=]+)"\s*;\s*\}\s*;'
)


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str  # base64

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        ring: dict[dns.name.Name, dns.tsig.Key] = dns.tsigkeyring.from_text(
            {self.name: (self.algorithm, self.secret)}
        )
        return ring


def read_tsig_key(path: Path) -> TsigKey:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        why = "no transfer TSIG key: `ods-duo bind-config` (or lab up) makes it; copy it to every node"
        raise ConfigError(str(path), [why]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the transfer TSIG key: {exc.strerror}"]) from None
    match = _STATEMENT.search(text)
    if match is None:
        raise ConfigError(str(path), ["not a BIND key statement with algorithm and secret"])
    return TsigKey(match["name"], match["alg"], match["secret"])


def ensure_tsig_key(path: Path, name: str, algorithm: str) -> TsigKey:
    """The key at path; made (256 random bits, file 0600) when there is none yet."""
    if path.exists():
        return read_tsig_key(path)
    key = TsigKey(name, algorithm, base64.b64encode(secrets.token_bytes(32)).decode())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render("tsig.key.j2", key))
    return key


def transfer_key(duo: Duo) -> TsigKey | None:
    """The duo's transfer key for ods-duo's own queries, transfers and NOTIFYs; None before there is one."""
    return read_tsig_key(duo.tsig_key_path) if duo.tsig_key_path.exists() else None
