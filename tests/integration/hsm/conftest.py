"""Module-scoped scratch tokens A, B and BACKUP with the duo KEK handed over as `kek init` should."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from duo_ods.hsm import kek
from tests.integration.hsm.tokens import (
    HOLDER,
    KEK,
    MODULE,
    PIN,
    SO_PIN,
    Hsm,
    hand_over_kek,
    session,
    write_conf,
)
from tests.support.hsm import init_token

if not Path(MODULE).exists():  # pragma: no cover - environment guard
    pytest.skip(f"SoftHSM2 not installed ({MODULE})", allow_module_level=True)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    """Tokens A, B and BACKUP in one token directory, with the duo KEK in all three.

    The backup token makes the KEK; A and B each get it wrapped to a transport key that the
    backup token's SO pinned as trusted, and hold it sealed.
    """
    root = tmp_path_factory.mktemp("softhsm")
    env = write_conf(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(env.conf))
        for label in ("A", "B", HOLDER):
            assert init_token(MODULE, label, PIN, SO_PIN) == "created"
        with session(HOLDER) as bk:
            kek.generate_kek(bk, KEK)
        for receiver in ("A", "B"):
            hand_over_kek(receiver)
        yield env
    shutil.rmtree(root, ignore_errors=True)
