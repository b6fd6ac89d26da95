"""Crash sweep (issue 12): `key create` and `key rollover` SIGKILLed at every kill point, then `key resume`.

Run from the repository folder, as root:
    .venv/bin/python bench/crash_sweep.py [--base-address 127.0.0.240] [--out bench/results/crash.md]
It brings up a lab, adds one zone per kill point, and for each point (tests/support/crash.py:
every journal record of the controller, and every node operation of the flow killed before and
after its handler) kills `key create` there, runs `key resume`, and checks that the duo is
consistent (no orphan key in any HSM, no key in one enforcer only, every used key in the backup,
`backup verify` passes); a zone whose run was undone gets `key create` again from a clean slate.
CI runs a seeded sample of these points (tests/integration/test_crash.py). Always `lab down`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: use this checkout's duo_ods
    sys.path.insert(0, str(REPO))

from tests.support.crash import (  # noqa: E402
    KEY_CREATE_POINTS,
    KEY_ROLLOVER_POINTS,
    ZONE_TEXT,
    Outcome,
    key_create_at,
    key_rollover_at,
    run,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-address", default="127.0.0.240")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "crash.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crash-sweep-"))
    lab = work / "lab"
    config = str(lab / "duo.toml")
    outcomes: list[tuple[Outcome, float]] = []
    started = time.monotonic()
    lab_up = [
        sys.executable,
        "-m",
        "duo_ods",
        "lab",
        "up",
        "--dir",
        str(lab),
        "--base-address",
        args.base_address,
    ]
    up = subprocess.run(lab_up, capture_output=True, text=True, check=False)
    try:
        if up.returncode != 0:
            print(up.stderr, file=sys.stderr)
            return 1
        plan = [("key create", p) for p in KEY_CREATE_POINTS] + [
            ("key rollover", p) for p in KEY_ROLLOVER_POINTS
        ]
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
    finally:
        subprocess.run([sys.executable, "-m", "duo_ods", "lab", "down", "--dir", str(lab)], check=False)
    failed = [o for o, _ in outcomes if o.problems or o.killed_exit == 0]
    lines = [
        "# Crash sweep: `key create` and `key rollover` killed at every kill point",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/crash_sweep.py` on a lab duo "
        f"(ODS 2.1.12, SoftHSM 2.6.1): {len(outcomes)} kill points, {len(failed)} failed, "
        f"{time.monotonic() - started:.0f} s in all.",
        "",
        "| command, kill point | exit when killed | after `key resume` | keys of the zone | problems | s |",
        "|---|---|---|---|---|---|",
    ]
    for o, seconds in outcomes:
        after = "finished forward" if "finished" in o.resume else (
            "undone" if "undid" in o.resume else o.resume or "nothing left")  # fmt: skip
        problems = "; ".join(o.problems) or "none"
        lines.append(f"| `{o.point}` | {o.killed_exit} | {after} | {o.keys} | {problems} | {seconds:.1f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
