"""Key creation benchmark (issue 14): `ods-duo key create ZONE` on the lab duo, one zone at a time.

Run from the repository folder, as root:
    .venv/bin/python bench/key_bench.py [--zones 10] [--base-address 127.0.0.250]
             [--out bench/results/keys.md] [--label NAME]
It brings up a lab (nodes on BASE+1 and BASE+2), adds --zones small zones with `zone add`, then times
`ods-duo key create` for each (wall clock of the whole command, as an operator sees it: every node
operation, the copies to the peer and the backup, both enforcers' imports, the snapshot after).
The median is the figure the issue's target (<= 1.5 s) is about. Always `lab down`. Each run adds a
section at the top of --out; --label names it (e.g. the revision measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZONE = (
    "$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 2026112901 3600 600 864000 300\n"
    "@ IN NS ns1\nns1 IN A 192.0.2.53\n"
)


def duo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "duo_ods", *args], capture_output=True, text=True, check=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--base-address", default="127.0.0.250")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "keys.md")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="key-bench-"))
    lab = work / "lab"
    config = str(lab / "duo.toml")
    times: list[float] = []
    load_before = os.getloadavg()
    try:
        duo("lab", "up", "--dir", str(lab), "--base-address", args.base_address)
        for i in range(args.zones):
            zone = f"kb{i}.test"
            (work / zone).write_text(ZONE.format(zone=zone))
            duo("--config", config, "zone", "add", zone, "--file", str(work / zone))
            t0 = time.monotonic()
            duo("--config", config, "key", "create", zone)
            times.append(time.monotonic() - t0)
            print(f"{zone}: {times[-1]:.2f} s", flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "duo_ods", "lab", "down", "--dir", str(lab)], check=False)
    median = statistics.median(times)
    section = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {args.label}".rstrip(),
        "",
        f"`key create` on the lab duo (2 nodes + backup, local transport), {len(times)} zones one after "
        f"another: median {median:.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
        f"(target: median <= 1.5 s). Machine: {platform.node()}, {os.cpu_count()} cores, load average "
        f"{load_before[0]:.1f} before and {os.getloadavg()[0]:.1f} after (other work shares this machine).",
        "",
        "Each: " + ", ".join(f"{t:.2f}" for t in times),
        "",
    ]
    old = args.out.read_text() if args.out.exists() else "# `key create` time (bench/key_bench.py)\n\n"
    head, _, rest = old.partition("\n\n")
    args.out.write_text(head + "\n\n" + "\n".join(section) + "\n" + rest)
    print(f"median {median:.2f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
