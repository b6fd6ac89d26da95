"""Node secrets (token PIN and SO PIN): random, in 0600 files, never in argv or logs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from duo_ods.errors import NodeError


def ensure_secret(path: Path) -> str:
    """Return the secret stored at path, creating a random one (0600) if there is none."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise NodeError(f"{path}: holds a secret but is readable by others (mode {mode:o}); chmod 600 it")
        value = path.read_text(encoding="utf-8").strip()
        if len(value) < 4:
            raise NodeError(f"{path}: secret is shorter than 4 characters")
        return value
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def read_secret(path: Path) -> str:
    if not path.exists():
        raise NodeError(f"{path}: secret file missing (run node init)")
    return ensure_secret(path)
