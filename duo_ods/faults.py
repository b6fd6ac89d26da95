"""Fault injection for the crash tests: this process kills itself (SIGKILL) at a named point.

Off unless ODS_DUO_FAULT is set, which only the crash tests and bench/crash_sweep.py do. Its
value names one point: `journal:N` (right after the Nth journal record of this process is on
disk) or `op:NAME:before|after` (a node operation, before or after its handler runs). A kill
there is what a power cut, an OOM kill or `kill -9` does at the worst moment.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "ODS_DUO_FAULT"
_seen: Counter[str] = Counter()


def point(kind: str, name: str = "") -> None:
    """Die here if the environment asks for this point."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    _seen[kind] += 1
    here = f"{kind}:{_seen[kind]}" if not name else f"{kind}:{name}"
    if wanted == here:
        os.kill(os.getpid(), signal.SIGKILL)
