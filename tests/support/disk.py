"""A node's disk lost, for tests that wipe a node of a running lab."""

from __future__ import annotations

import shutil
import time
from pathlib import Path


def remove_tree(path: Path) -> None:
    """A node's disk lost: its folder removed, though the lab's watchers (still running) may write
    their state, lock and relay files into it meanwhile ("Directory not empty"): try again until it
    is gone."""
    for _ in range(50):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} could not be removed")
