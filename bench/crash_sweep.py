"""Crash sweep (issue 12): `key create`, `key rollover`, `backup restore` and `kek init --replace`
SIGKILLed at every kill point.

Run from the repository folder, as root:
    .venv/bin/python bench/crash_sweep.py [--base-address 127.0.0.250] [--out FILE]
        [--only keys|restore|kek]
It brings up a lab, adds one zone per kill point, and for each point (tests/support/crash.py:
every journal record of the controller, and every node operation of the flow killed before and
after its handler) kills `key create` there, runs `key resume`, and checks that the duo is
consistent (no orphan key in any HSM, no key in one enforcer only, every used key in the backup,
`backup verify` passes); a zone whose run was undone gets `key create` again from a clean slate.
Then, on a fresh lab (its one zone and two keys: 29 points), node b is wiped and its `backup restore`
killed at every restore kill point (every journal record: begin, init, KEK, one per key unwrapped,
zones, one per key import, states; every node operation of the rebuild before and after), and
finished by running the restore again (even points) or `key resume` (odd points): b must serve
every zone with a's DNSKEY RRset, and the duo be consistent. CI runs a seeded sample of these
points (tests/integration/test_crash.py). Last, on a fresh lab, `kek init --replace` is killed at
each of its 18 kill points (6 journal records: begin, commit, per node the send and the SO pin; 6
node operations before and after) and recovered by `key resume`: one KEK in every token (the old one
when undone, a new one when finished), no transport key or SO pin left, the backup keeps the
replaced KEK, the duo consistent, and `key create` of a fresh zone works. Always `lab down`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: use this checkout's duo_ods
    sys.path.insert(0, str(REPO))

from tests.support.crash import (  # noqa: E402
    KEK_REPLACE_POINTS,
    KEY_CREATE_POINTS,
    KEY_ROLLOVER_POINTS,
    ZONE_TEXT,
    Outcome,
    kek_replace_at,
    key_create_at,
    key_rollover_at,
    live_keys,
    restore_at,
    restore_points,
    run,
)


def lab_up(lab: Path, address: str) -> bool:
    argv = [sys.executable, "-m", "duo_ods", "lab", "up", "--dir", str(lab), "--base-address", address]
    up = subprocess.run(argv, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
    return up.returncode == 0


def lab_down(lab: Path) -> None:
    subprocess.run([sys.executable, "-m", "duo_ods", "lab", "down", "--dir", str(lab)], check=False)


def key_sweep(work: Path, config: str, outcomes: list[tuple[Outcome, float]]) -> None:
    """key create and key rollover at every kill point, a zone each."""
    plan = [("key create", p) for p in KEY_CREATE_POINTS] + [("key rollover", p) for p in KEY_ROLLOVER_POINTS]
    for i, (command, point) in enumerate(plan):
        zone = f"sweep{i}.test"
        path = work / zone
        path.write_text(ZONE_TEXT.format(zone=zone))
        run(config, "zone", "add", zone, "--file", str(path))
        t0 = time.monotonic()
        if command == "key create":
            outcome = key_create_at(config, ["a", "b"], zone, point)
        else:
            run(config, "key", "create", zone)
            outcome = key_rollover_at(config, ["a", "b"], zone, point)
        outcome.point = f"{command} {point}"
        outcomes.append((outcome, time.monotonic() - t0))
        print(f"{outcome.point}: exit {outcome.killed_exit}, keys {outcome.keys}, {outcome.problems}")


def restore_sweep(config: str, outcomes: list[tuple[Outcome, float]]) -> None:
    """backup restore of node b at every kill point, on a fresh lab (its one zone, two keys: the
    journal kill points are then 1..9), finished alternately by restore again and key resume."""
    for i, point in enumerate(restore_points(live_keys(config, "a"))):
        recover: Literal["restore", "resume"] = "restore" if i % 2 == 0 else "resume"
        t0 = time.monotonic()
        outcome = restore_at(config, ["a", "b"], "b", point, recover)
        outcome.point = f"backup restore {point} (then {'restore again' if i % 2 == 0 else 'key resume'})"
        outcomes.append((outcome, time.monotonic() - t0))
        print(f"{outcome.point}: exit {outcome.killed_exit}, zones {outcome.keys}, {outcome.problems}")


def kek_sweep(work: Path, config: str, outcomes: list[tuple[Outcome, float]]) -> None:
    """kek init --replace at every kill point; a fresh zone each for the `key create` after recovery."""
    for i, point in enumerate(KEK_REPLACE_POINTS):
        zone = f"kek{i}.test"
        path = work / zone
        path.write_text(ZONE_TEXT.format(zone=zone))
        run(config, "zone", "add", zone, "--file", str(path))
        t0 = time.monotonic()
        outcome = kek_replace_at(config, ["a", "b"], zone, point)
        outcome.point = f"kek init --replace {point}"
        outcomes.append((outcome, time.monotonic() - t0))
        print(f"{outcome.point}: exit {outcome.killed_exit}, new KEK {outcome.keys}, {outcome.problems}")


class ResultFile(list[tuple[Outcome, float]]):
    """The outcomes so far; the result file is rewritten after each one, so a sweep cut short (a
    deadline, a crash of the machine) still leaves what ran, marked partial."""

    def __init__(self, out: Path, planned: str) -> None:
        super().__init__()
        self.out = out
        self.planned = planned
        self.started = time.monotonic()
        self.done = False

    def append(self, item: tuple[Outcome, float]) -> None:
        super().append(item)
        self.write()

    def finish(self) -> None:
        self.done = True
        self.write()

    def failed(self) -> list[Outcome]:
        return [o for o, _ in self if o.problems or o.killed_exit == 0]

    def write(self) -> None:
        state = "" if self.done else f" PARTIAL (still running or cut short; planned: {self.planned})"
        lines = [
            "# Crash sweep: `key create`, `key rollover`, `backup restore` and `kek init --replace` killed "
            "at every kill point",
            "",
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/crash_sweep.py` on a lab "
            f"duo (ODS 2.1.12, SoftHSM 2.6.1): {len(self)} kill points, {len(self.failed())} failed, "
            f"{time.monotonic() - self.started:.0f} s in all.{state}",
            "",
            "| command, kill point | exit when killed | after recovery | keys of the zone (restore: zones "
            "compared; kek: 1 = new KEK everywhere, 0 = old KEK kept) | problems | s |",
            "|---|---|---|---|---|---|",
        ]
        for o, seconds in self:
            # "undid the unfinished ..." contains "finished": look for the undo first
            after = "undone" if "undid" in o.resume else (
                "finished forward" if "finished" in o.resume else o.resume or "nothing left")  # fmt: skip
            problems = "; ".join(o.problems) or "none"
            lines.append(
                f"| `{o.point}` | {o.killed_exit} | {after} | {o.keys} | {problems} | {seconds:.1f} |"
            )
        self.out.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-address", default="127.0.0.250")
    parser.add_argument("--out", type=Path, help="result file (default bench/results/crash[-PART].md)")
    parser.add_argument("--only", choices=("keys", "restore", "kek"), help="one part of the sweep")
    args = parser.parse_args()
    if args.out is None:
        args.out = REPO / "bench" / "results" / (f"crash-{args.only}.md" if args.only else "crash.md")
    work = Path(tempfile.mkdtemp(prefix="crash-sweep-"))
    planned = {
        "keys": f"{len(KEY_CREATE_POINTS) + len(KEY_ROLLOVER_POINTS)} points",
        "restore": "29 points (one zone, two keys)",
        "kek": f"{len(KEK_REPLACE_POINTS)} points",
    }
    outcomes = ResultFile(args.out, "; ".join(v for k, v in planned.items() if args.only in (None, k)))
    for part in ("keys", "restore", "kek"):
        if args.only not in (None, part):
            continue
        lab = work / f"lab-{part}"
        if not lab_up(lab, args.base_address):
            return 1
        try:
            if part == "keys":
                key_sweep(work, str(lab / "duo.toml"), outcomes)
            elif part == "restore":
                restore_sweep(str(lab / "duo.toml"), outcomes)
            else:
                kek_sweep(work, str(lab / "duo.toml"), outcomes)
        finally:
            lab_down(lab)
    outcomes.finish()
    print(f"wrote {args.out}")
    return 1 if outcomes.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
