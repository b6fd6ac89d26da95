"""The watcher's memory, per node: what it last did with each zone file (survives restarts)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from duo_ods.render.engine import write_atomic
from duo_ods.watch.plan import ZoneFileState


def load_state(path: Path) -> dict[str, ZoneFileState]:
    if not path.exists():
        return {}
    return {zone: ZoneFileState(**entry) for zone, entry in json.loads(path.read_text()).items()}


def save_state(path: Path, state: dict[str, ZoneFileState]) -> None:
    write_atomic(path, json.dumps({z: asdict(s) for z, s in sorted(state.items())}, indent=1) + "\n")


def state_path(state_dir: Path) -> Path:
    return state_dir / "watch.json"
