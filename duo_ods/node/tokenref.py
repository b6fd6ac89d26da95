"""Which PKCS#11 token a node (or the backup store) works with, and a session on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from duo_ods.errors import HsmError
from duo_ods.hsm._p11 import Session
from duo_ods.hsm.token import open_session
from duo_ods.node.secrets import read_secret

KEK_LABEL = "ods-duo-kek"
TRANSPORT_LABEL = "ods-duo-kek-transport"


@dataclass(frozen=True)
class TokenRef:
    module: str
    label: str
    pin_file: Path
    softhsm_conf: Path | None  # None for a real HSM

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A logged-in session. SoftHSM reads SOFTHSM2_CONF once per process, so it is set
        here, before the library loads, and a process never switches to another token store."""
        if self.softhsm_conf is not None:
            current = os.environ.get("SOFTHSM2_CONF")
            if current not in (None, str(self.softhsm_conf)):
                raise HsmError(f"this process already uses SoftHSM config {current}, not {self.softhsm_conf}")
            os.environ["SOFTHSM2_CONF"] = str(self.softhsm_conf)
        with open_session(self.module, self.label, read_secret(self.pin_file)) as session:
            yield session
