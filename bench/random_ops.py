"""Randomised operations on the lab duo (issue 13): seeded step sequences with the freshness sampler.

Run from the repository folder, as root:
    .venv/bin/python bench/random_ops.py [--modes failover split] [--seeds 1301 7 42] [--steps 60]
             [--no-restore] [--out bench/results/random_ops.md] [--label NAME]
             [--address failover=127.0.0.240] [--address split=127.0.0.245]

For each mode it brings up one lab (failover on 127.0.0.240: ns1 pulls from a, then b; split on
127.0.0.245: ns1 from a, ns2 from b; --address MODE=BASE puts a mode's lab on another base address,
e.g. on a shared machine where those are taken) and starts the sampler of tests/support/freshness.py (AXFR of
every signer and secondary every 0.5 s: serial and content digest; two contents under one serial, or
a secondary going back to older content, is a regression). Then, one seed after the other on that
lab, tests.support.freshness.RandomOps runs --steps steps (node stop/start, SIGSTOP/SIGCONT of a
signer's ods-signerd, zone file edits in the watched input directory, `zone update`, and one
wipe-and-`backup restore` of a node unless --no-restore), brings every node back, waits up to 60 s
until every signer and secondary serves the newest content and runs `ods-duo check`. The lab always
goes down (by pid). Each run adds a section at the top of --out: per seed the steps, the samples,
the regressions the sampler found (with their wall-clock time, to match the daemons' logs), the
settle time, check, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import Lab, lab_processes, run_duo  # noqa: E402
from tests.support.freshness import ZONE, RandomOps, Sampler, check_report, version_digest  # noqa: E402

ADDRESSES = {"failover": ("127.0.0.240",), "split": ("127.0.0.245", "--split")}
HEADER = "# Randomised operations (issue 13)\n\nWritten by `bench/random_ops.py`; newest run first.\n"


def run_seed(lab: Lab, sampler: Sampler, seed: int, steps: int, restore: bool) -> dict[str, Any]:
    before_problems = len(sampler.problems)
    before_samples = sum(sampler.counts().values())
    started = time.monotonic()
    ops = RandomOps(lab, sampler, seed, steps, restore=restore, log=lambda line: print(line, flush=True))
    result: dict[str, Any] = {"seed": seed, "steps": steps}
    result["aborted"] = ""
    try:
        ops.run()
    except AssertionError as exc:  # a command failed: recorded, the nodes brought back, the seed settles
        result["aborted"] = f"step {len(ops.done) + 1} ({ops.choose_text}): {one_line(str(exc))[:400]}"
        recover(lab, ops)
    try:
        result["settle"] = f"{ops.settle(60.0):.1f} s"
    except AssertionError as exc:  # did not settle: recorded, the next seed runs on
        result["settle"] = f"NOT within 60 s: {one_line(str(exc))[:300]}"
        recover(lab, ops)
    report = check_report(lab)
    time.sleep(2)
    result["check"] = "OK" if report["ok"] else "NOT OK: " + json.dumps(report)[:300]
    result["kinds"] = dict(Counter(s.kind for s in ops.done))
    result["versions"] = sum(1 for s in ops.done if s.kind in ("edit", "update"))
    result["samples"] = sum(sampler.counts().values()) - before_samples
    result["regressions"] = sampler.problems[before_problems:]
    result["step_problems"] = ops.problems
    result["seconds"] = time.monotonic() - started
    result["replay"] = ops.replay()
    print(f"seed {seed}: {json.dumps({k: v for k, v in result.items() if k != 'replay'})}", flush=True)
    return result


def one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def recover(lab: Lab, ops: RandomOps) -> None:
    """After a failed step: every signer resumed, every node whose daemons are down started again."""
    ops.resume_all()
    status = json.loads(run_duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
    for node in status["nodes"]:
        if any(pid is None for pid in node["daemons"].values()):
            proc = lab.duo("node", "start", node["name"], check=False)
            print(f"recover: node start {node['name']}: exit {proc.returncode} {one_line(proc.stderr)}")
    ops.state = {name: "up" for name in ops.state}


def run_mode(
    mode: str, seeds: list[int], steps: int, restore: bool, work: Path, *, base: str | None = None
) -> dict[str, Any]:
    lab_dir = work / mode
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    try:
        address, *extra = ADDRESSES[mode]
        run_duo("--json", "lab", "up", "--dir", str(lab_dir), "--base-address", base or address, *extra)
        status = json.loads(run_duo("--json", "lab", "status", "--dir", str(lab_dir)).stdout)
        lab = Lab(lab_dir, status)
        sampler = Sampler(lab)
        sampler.expect(version_digest(lab, (lab_dir / "input" / ZONE).read_text()))
        thread = sampler.start()
        try:
            for seed in seeds:
                results.append(run_seed(lab, sampler, seed, steps, restore))
        finally:
            sampler.stop.set()
            thread.join(timeout=10)
    finally:
        run_duo("lab", "down", "--dir", str(lab_dir), check=False)
        for pid, _ in lab_processes(lab_dir):  # never leave daemons behind
            os.kill(pid, 9)
    return {"mode": mode, "seeds": results, "seconds": time.monotonic() - started}


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def report(runs: list[dict[str, Any]], args: argparse.Namespace, load: tuple[float, ...], commit: str) -> str:
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {args.label}".rstrip(),
        "",
        f"Commit {commit}; {platform.node()}, {os.cpu_count()} cores, shared (load average "
        f"{load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end). {args.steps} steps per seed, "
        f"restore {'on' if args.restore else 'off'}; the sampler AXFRs every signer and secondary "
        "every 0.5 s.",
        "",
        "| mode | seed | steps (kinds) | versions | samples | regressions | aborted | settle | check "
        "| time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for r in run["seeds"]:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["kinds"].items()))
            lines.append(
                f"| {run['mode']} | {r['seed']} | {r['steps']} ({kinds}) | {r['versions']} | {r['samples']} "
                f"| {len(r['regressions'])} | {r['aborted'] or 'no'} | {r['settle']} "
                f"| {one_line(r['check'])[:200]} "
                f"| {r['seconds']:.0f} s |"
            )
    lines.append("")
    lines += [f"Wall time: {run['mode']} {run['seconds']:.0f} s (with lab up and down)." for run in runs]
    lines.append("")
    for run in runs:
        for r in run["seeds"]:
            if (
                r["regressions"]
                or r["step_problems"]
                or r["aborted"]
                or not r["settle"].endswith(" s")
                or r["check"] != "OK"
            ):
                lines += [f"### {run['mode']}, seed {r['seed']}", ""]
                lines += [f"- sampler: {p}" for p in r["regressions"]]
                lines += [f"- step: {one_line(p)[:600]}" for p in r["step_problems"]]
                lines += [f"- aborted at {r['aborted']}"] if r["aborted"] else []
                lines += ["", "```", r["replay"], "```", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["failover", "split"], choices=sorted(ADDRESSES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1301, 7, 42])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--no-restore", dest="restore", action="store_false")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "random_ops.md")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--address", action="append", default=[], metavar="MODE=BASE", help="a mode's lab base address"
    )
    args = parser.parse_args()
    bases = dict(a.split("=", 1) for a in args.address)
    unknown = set(bases) - set(ADDRESSES)
    if unknown:
        parser.error(f"--address: unknown mode {', '.join(sorted(unknown))}")
    load = os.getloadavg()
    commit = head()  # at the start: the repository may change while it runs
    work = Path(tempfile.mkdtemp(prefix="random-ops-"))
    runs = [
        run_mode(mode, args.seeds, args.steps, args.restore, work, base=bases.get(mode))
        for mode in args.modes
    ]
    section = report(runs, args, load, commit)
    print(section)
    old = args.out.read_text() if args.out.exists() else HEADER
    body = old[len(HEADER) :] if old.startswith(HEADER) else old
    args.out.write_text(HEADER + "\n" + section + ("\n" + body.lstrip("\n") if body.strip() else ""))
    bad = any(
        r["regressions"] or r["step_problems"] or r["aborted"] or r["check"] != "OK"
        for run in runs
        for r in run["seeds"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
