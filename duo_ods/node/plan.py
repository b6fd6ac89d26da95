"""`node init` for a system node as a plan: what it wants, what is there, the steps between.

Pure: `plan_steps` compares the wanted state (directories, files, secrets, a token, the
enforcer database, systemd units) with an observed snapshot and returns one step per
wanted thing, saying what it would create or change, or that it already matches. The
I/O (observing, acting) lives in duo_ods.node.system, so this logic is tested without a
disk, a token or systemd.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from duo_ods.errors import NodeError

Action = Literal["ok", "create", "update", "chmod", "remove", "enable", "start", "restart", "note"]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Perms:
    """Owner, group and mode, by name (users differ in number between machines)."""

    user: str
    group: str
    mode: int

    def __str__(self) -> str:
        return f"{self.user}:{self.group} {self.mode:04o}"


@dataclass(frozen=True)
class WantDir:
    path: Path
    perms: Perms


@dataclass(frozen=True)
class WantFile:
    """A rendered file. `schema`: the ODS .rng it was checked against; `restarts`: daemons must
    re-read it (conf.xml), so a change restarts units that run."""

    path: Path
    text: str
    perms: Perms
    schema: str | None = None
    restarts: bool = False


@dataclass(frozen=True)
class WantSecret:
    """A secret file (a PIN, the transfer key): made once when missing, never rewritten, never shown."""

    path: Path
    value: str = field(repr=False)
    perms: Perms
    what: str = "a random PIN"


@dataclass(frozen=True)
class WantToken:
    label: str
    softhsm_conf: Path
    tokendir: Path
    pin_file: Path
    so_pin_file: Path


@dataclass(frozen=True)
class WantDatabase:
    path: Path
    perms: Perms


@dataclass(frozen=True)
class WantAbsent:
    path: Path
    why: str


@dataclass(frozen=True)
class WantUnit:
    name: str


@dataclass(frozen=True)
class Note:
    """Nothing to do, but the operator should know (e.g. who starts the daemons)."""

    topic: str
    text: str


Want = WantDir | WantFile | WantSecret | WantToken | WantDatabase | WantAbsent | WantUnit | Note


@dataclass(frozen=True)
class PathState:
    kind: Literal["dir", "file", "other"]
    perms: Perms
    sha256: str | None = None  # files only


@dataclass(frozen=True)
class UnitState:
    enabled: bool
    active: bool


@dataclass(frozen=True)
class Observed:
    """A snapshot of what is there. A path missing from `paths` does not exist."""

    paths: Mapping[Path, PathState] = field(default_factory=dict)
    tokens: frozenset[str] = frozenset()  # token labels present in the wanted token store
    databases: Mapping[Path, int | None] = field(default_factory=dict)  # databaseVersion; None: not ODS's
    units: Mapping[str, UnitState] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    action: Action
    kind: str
    target: str
    detail: str
    want: Want

    @property
    def changes(self) -> bool:
        return self.action not in ("ok", "note")

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "kind": self.kind, "target": self.target, "detail": self.detail}


def _path_step(want: WantDir | WantFile | WantSecret | WantDatabase, kind: str, seen: PathState | None,
               content_ok: bool, what: str) -> Step:  # fmt: skip
    target = str(want.path)
    if seen is None:
        return Step("create", kind, target, f"{what} ({want.perms})", want)
    if not content_ok:
        return Step("update", kind, target, f"content differs; write it ({want.perms})", want)
    if seen.perms != want.perms:
        return Step("chmod", kind, target, f"{seen.perms} -> {want.perms}", want)
    return Step("ok", kind, target, f"matches ({want.perms})", want)


def _expect_kind(path: Path, seen: PathState | None, kind: str) -> None:
    if seen is not None and seen.kind != kind:
        raise NodeError(f"{path}: is a {seen.kind}, not a {kind}; move it away and run node init again")


def _plan_path(want: WantDir | WantFile | WantSecret | WantDatabase, observed: Observed) -> Step:
    seen = observed.paths.get(want.path)
    if isinstance(want, WantDir):
        _expect_kind(want.path, seen, "dir")
        return _path_step(want, "dir", seen, True, "make it")
    _expect_kind(want.path, seen, "file")
    if isinstance(want, WantFile):
        same = seen is not None and seen.sha256 == digest(want.text)
        checked = f", checked against {want.schema}.rng" if want.schema else ""
        return _path_step(want, "file", seen, same, f"render it{checked}")
    if isinstance(want, WantSecret):
        # An existing secret is kept whatever it holds: the token was made with it.
        return _path_step(want, "secret", seen, True, f"make {want.what}")
    if seen is not None and observed.databases.get(want.path) is None:
        raise NodeError(f"{want.path}: exists but is not an enforcer database; move it away")
    return _path_step(want, "database", seen, True, "load ODS's schema.sqlite")


def _plan_unit(want: WantUnit, observed: Observed, restart: bool) -> list[Step]:
    state = observed.units.get(want.name, UnitState(enabled=False, active=False))
    steps = []
    if not state.enabled:
        steps.append(Step("enable", "unit", want.name, "systemctl enable", want))
    if not state.active:
        steps.append(Step("start", "unit", want.name, "systemctl start", want))
    elif restart:
        steps.append(Step("restart", "unit", want.name, "its config changes: systemctl restart", want))
    return steps or [Step("ok", "unit", want.name, "enabled and running", want)]


def plan_steps(wants: Sequence[Want], observed: Observed) -> list[Step]:
    """One step per wanted thing, in order (units: enable, start or restart). Raises NodeError for
    what init must not touch (a file where a folder belongs, a database that is not the enforcer's)."""
    steps: list[Step] = []
    restart = False  # a config the daemons read at start changes: running units restart
    for want in wants:
        if isinstance(want, WantDir | WantFile | WantSecret | WantDatabase):
            step = _plan_path(want, observed)
            if isinstance(want, WantFile) and want.restarts and step.action in ("create", "update"):
                restart = True
            steps.append(step)
        elif isinstance(want, WantToken):
            if want.label in observed.tokens:
                steps.append(Step("ok", "token", want.label, f"exists in {want.tokendir}", want))
            else:
                detail = f"initialise in {want.tokendir} (PINs from {want.pin_file.name}, never argv)"
                steps.append(Step("create", "token", want.label, detail, want))
        elif isinstance(want, WantAbsent):
            action: Action = "remove" if want.path in observed.paths else "ok"
            detail = want.why if action == "remove" else f"absent ({want.why})"
            steps.append(Step(action, "file", str(want.path), detail, want))
        elif isinstance(want, WantUnit):
            steps += _plan_unit(want, observed, restart)
        else:
            steps.append(Step("note", want.topic, "", want.text, want))
    return steps


def pending(steps: Sequence[Step]) -> list[Step]:
    return [s for s in steps if s.changes]


def format_plan(steps: Sequence[Step]) -> str:
    """One line per step: action, kind, target, detail."""
    lines = []
    for s in steps:
        target = f"{s.target}  " if s.target else ""
        lines.append(f"  {s.action:<8} {s.kind:<9} {target}{s.detail}")
    todo = len(pending(steps))
    lines.append(f"  {todo} step(s) to do" if todo else "  nothing to do: everything matches")
    return "\n".join(lines)
