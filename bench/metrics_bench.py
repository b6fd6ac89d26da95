"""Metrics benchmark (issue 17): the exporter's RSS, a scrape's time and a refresh's time for
1,000 zones, written to bench/results/metrics.md.

Run from the repository folder: .venv/bin/python bench/metrics_bench.py [--zones 1000]
[--listen 127.0.10.40:9553] [--out bench/results/metrics.md]. About a minute; no daemons.

What it measures, and how (a 1,000-zone lab takes over an hour to sign on this machine,
bench/results/onboard-1000-batch.md, so the zones' check results come from real checks of signed
copies made here, not from a lab):
  1. One small zone (tests/unit/check/signer.py: NSEC3, KSK + ZSK) signed, saved as three copies
     (a, b, ns1); `check_zone` on them --zones times, one process (wall clock): the check work of a
     refresh without its AXFRs. Each report is given its own zone name (z0000.bench ...).
  2. An Observation of those reports with 2 keys per zone on each of 2 nodes, both watchers' state
     for every zone, and the backup's numbers: turning it into metric families (the rest of a
     refresh) is timed.
  3. A child process runs the real exporter (metrics.exporter.Exporter, its HTTP server on
     --listen) holding that last refresh; 20 scrapes of /metrics over HTTP are timed from here
     (median, max) and the child's RSS (VmRSS, VmHWM) read from /proc.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from duo_ods.check.model import ZoneReport
from duo_ods.check.run import check_zone
from duo_ods.check.sources import FileSource
from duo_ods.metrics.exporter import Exporter
from duo_ods.metrics.families import families
from duo_ods.metrics.observation import Observation, WatcherView
from duo_ods.metrics.watchfile import WatchStats
from duo_ods.protocol import ops as P
from duo_ods.watch.plan import ZoneFileState
from tests.unit.check.signer import NOW, ORIGIN, Key, signed


def reports(count: int, folder: Path) -> tuple[list[ZoneReport], float, float]:
    zone = signed(ksk=Key.make(flags=257), zsk=Key.make())
    copies = []
    for name in ("a", "b", "ns1"):
        zone.to_file(str(folder / name), relativize=False, want_origin=True)
        copies.append(FileSource(name, folder / name))
    started = time.monotonic()
    cpu = time.process_time()
    found = []
    for i in range(count):
        report = check_zone(ORIGIN.to_text(omit_final_dot=True), copies, now=NOW, workers=1)
        assert report.ok, report.problems
        report.zone = f"z{i:04d}.bench"
        found.append(report)
    return found, time.monotonic() - started, time.process_time() - cpu


def observation(zone_reports: list[ZoneReport]) -> Observation:
    def key(role: str) -> dict[str, object]:
        return {"role": role, "inception": NOW - 86400, "flags": {"introducing": 1},
                "records": [{"state": "omnipresent"}]}  # fmt: skip

    zones = [r.zone for r in zone_reports]
    keys = {z: [key("KSK"), key("ZSK")] for z in zones}
    files = {z: ZoneFileState("0" * 64, "ok") for z in zones}
    stats = WatchStats(NOW, 0, dict.fromkeys(zones, float(NOW)))
    return Observation(
        at=NOW, reports=zone_reports, daemons={n: {"enforcerd": 1, "signerd": 2} for n in ("a", "b")},
        keys={"a": keys, "b": keys}, lifetimes={"KSK": 365 * 86400.0, "ZSK": 90 * 86400.0},
        bundles=2 * len(zones), snapshot_taken=NOW, checked_at=NOW, check_duration=1.0,
        watchers=[WatcherView(n, files, stats) for n in ("a", "b")],
    )  # fmt: skip


def serve(obs_file: str, host: str, port: int, ready: multiprocessing.synchronize.Event) -> None:
    """The child: a real exporter holding the observation, served until killed."""
    obs = pickle.loads(Path(obs_file).read_bytes())  # noqa: S301 (our own file)
    exporter = Exporter()
    exporter.refresh(lambda: obs)
    for op in (P.STATUS, P.KEY_STATES, P.ZONE_LIST, P.BUNDLE_LIST, P.SNAPSHOT_GET):
        for target in ("a", "b"):
            exporter.op_times.observe(target, op.name, 0.05, True)
    exporter.serve(host, port)
    ready.set()
    while True:
        time.sleep(3600)


def rss(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            found[key] = int(rest.split()[0]) // 1024
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zones", type=int, default=1000)
    parser.add_argument("--listen", default="127.0.10.40:9553")
    parser.add_argument("--out", type=Path, default=Path("bench/results/metrics.md"))
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    with tempfile.TemporaryDirectory() as tmp:
        zone_reports, check_time, check_cpu = reports(args.zones, Path(tmp))
        obs = observation(zone_reports)
        started = time.monotonic()
        fams = families(obs)
        families_time = time.monotonic() - started
        series = sum(len(f.samples) for f in fams)
        exporter = Exporter()
        started = time.monotonic()
        exporter.refresh(lambda: obs)  # after a check: its part rendered too
        refresh_time = time.monotonic() - started
        started = time.monotonic()
        exporter.refresh(lambda: obs)  # between checks: the daemons' and watchers' part only
        cheap_time = time.monotonic() - started
        obs_file = Path(tmp) / "obs.pickle"
        obs_file.write_bytes(pickle.dumps(obs))
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        child = ctx.Process(target=serve, args=(str(obs_file), host, int(port), ready), daemon=True)
        child.start()
        try:
            assert ready.wait(120), "the exporter did not start"
            url = f"http://{host}:{port}/metrics"
            times, size = [], 0
            for _ in range(20):
                t0 = time.monotonic()
                with urllib.request.urlopen(url, timeout=30) as answer:
                    size = len(answer.read())
                times.append(time.monotonic() - t0)
            memory = rss(child.pid or 0)
        finally:
            child.kill()
            child.join()
    load = os.getloadavg()
    lines = [
        "# Metrics exporter benchmark (issue 17): 1,000 zones",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} by `bench/metrics_bench.py --zones "
        f"{args.zones}`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, shared (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end); python {platform.python_version()}.",
        "",
        "How (see the script's docstring): the zones' check results are real `check_zone` results of a small "
        "signed zone (three copies: a, b, ns1) named z0000.bench ... (a 1,000-zone lab takes over an hour "
        "to sign here); 2 keys per zone on each of 2 nodes, both watchers' state for every zone. The "
        "exporter runs in a child process and is scraped over HTTP.",
        "",
        "| what | value |",
        "|---|---|",
        f"| zones | {args.zones} |",
        f"| samples on a scrape | {series + 5 * 2 * 14} ({series} from the refresh, plus the operation "
        "times' histogram) |",
        f"| scrape size | {size / 1024:.0f} KiB |",
        f"| scrape time over HTTP, median of 20 | {statistics.median(times) * 1000:.0f} ms |",
        f"| scrape time, slowest of 20 | {max(times) * 1000:.0f} ms |",
        f"| exporter RSS after the scrapes (VmRSS) | {memory.get('VmRSS')} MB |",
        f"| exporter peak RSS (VmHWM) | {memory.get('VmHWM')} MB |",
        f"| refresh: metric families from the observation | {families_time * 1000:.0f} ms |",
        f"| refresh after a check: families and the whole page rendered | {refresh_time * 1000:.0f} ms |",
        f"| refresh between checks (every --interval): the daemons' and watchers' part | "
        f"{cheap_time * 1000:.0f} ms |",
        f"| refresh: check of the zones (3 copies each, from files, one process) | {check_time:.1f} s "
        f"({check_time / args.zones * 1000:.0f} ms a zone); CPU {check_cpu:.1f} s "
        f"({check_cpu / args.zones * 1000:.0f} ms a zone) |",
        "",
        "A scrape sends the last refresh's page, rendered once when the refresh was made, plus the operation "
        "times: its time does not depend on the nodes. The check of every zone is the slow part and runs on "
        "its own interval (`--check-interval`, default 300 s: above the check time here, on a shared, "
        "loaded machine; add the AXFRs); the daemons and watchers are read every `--interval` "
        "(default 15 s), so a dead signer shows within that whatever the number of zones.",
        "",
    ]  # fmt: skip
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
