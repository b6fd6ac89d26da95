"""Which PKCS#11 token a node (or the backup store) works with, and a session on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from duo_ods.errors import HsmError
from duo_ods.hsm._p11 import Session
from duo_ods.hsm.token import open_session, open_so_session
from duo_ods.node.secrets import read_secret

KEK_LABEL = "ods-duo-kek"
TRANSPORT_LABEL = "ods-duo-kek-transport"


@dataclass(frozen=True)
class TokenRef:
    module: str
    label: str
    pin_file: Path
    softhsm_conf: Path | None  # None for a real HSM
    so_pin_file: Path | None = None  # the backup token's SO PIN (lab); production: from the operator

    def _use_conf(self) -> None:
        if self.softhsm_conf is not None:
            current = os.environ.get("SOFTHSM2_CONF")
            if current not in (None, str(self.softhsm_conf)):
                raise HsmError(f"this process already uses SoftHSM config {current}, not {self.softhsm_conf}")
            os.environ["SOFTHSM2_CONF"] = str(self.softhsm_conf)

    @contextmanager
    def so_session(self) -> Iterator[Session]:
        """The token's SO, for pinning transport keys. No user session of this process may be open."""
        if self.so_pin_file is None:
            raise HsmError(f"token {self.label}: no SO PIN available here")
        self._use_conf()
        with open_so_session(self.module, self.label, read_secret(self.so_pin_file)) as session:
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A logged-in session. SoftHSM reads SOFTHSM2_CONF once per process, so it is set
        here, before the library loads, and a process never switches to another token store."""
        self._use_conf()
        with open_session(self.module, self.label, read_secret(self.pin_file)) as session:
            yield session
