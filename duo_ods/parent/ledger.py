"""What was submitted to the parent, so a DS is submitted once and a failed submit retried later.

Kept beside the key journal (0600 JSON, controller-local). Losing it costs one more submit, which is
harmless: adding a DS the parent has, or removing one it dropped, changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from duo_ods.render.engine import write_atomic


@dataclass
class Submission:
    zone: str
    keytag: int
    action: str  # "add" or "remove"
    done: bool = False
    attempts: int = 0
    last_try: float = 0.0
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.zone} {self.keytag} {self.action}"


def due(entry: Submission | None, now: float, retry: float) -> bool:
    """Submit now? Never submitted, or the last attempt failed `retry` seconds ago or more."""
    return entry is None or (not entry.done and now - entry.last_try >= retry)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.entries = {k: Submission(**v) for k, v in data.items()}
        except FileNotFoundError:
            self.entries = {}
        except (ValueError, TypeError):
            self.entries = {}  # unreadable: at worst one more (idempotent) submit

    def get(self, zone: str, keytag: int, action: str) -> Submission | None:
        return self.entries.get(f"{zone} {keytag} {action}")

    def put(self, entry: Submission) -> None:
        self.entries[entry.key] = entry
        self.save()

    def drop(self, zone: str, keytag: int, action: str) -> None:
        if self.entries.pop(f"{zone} {keytag} {action}", None) is not None:
            self.save()

    def save(self) -> None:
        text = json.dumps({k: asdict(v) for k, v in self.entries.items()}, indent=1, sort_keys=True)
        write_atomic(self.path, text + "\n", mode=0o600)
