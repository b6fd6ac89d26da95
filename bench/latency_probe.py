"""Where one zone update's time goes inside the watcher (issue 14's latency target): each part the
watcher runs between a file event and its NOTIFY, timed on its own against a running lab.

Brings up a lab (`ods-duo lab up --base-address ...`), drops a --records zone into its input folder,
waits until both signers serve it, then times, --runs times each (median, min, max):
  - the input check of the file in this process (what the watcher runs, per node);
  - the node's own check of the checked text (what the agent runs again before it writes);
  - ZONE_LIST to node a's agent (the watcher's reconcile asks it on every event);
  - the SOA of every signer, and of every secondary (the serial to level to);
  - ZONE_UPDATE to node a's agent (checks, writes the input, `ods-signer sign --serial`), then until
    signer a serves that serial (polled every 10 ms), then until the lab's secondary does.
The lab's own watchers run meanwhile (they see no file change: the file stays as it is).

Run from the repository folder, as root:
    .venv/bin/python bench/latency_probe.py --base-address 127.0.15.30 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.harness from this checkout
    sys.path.insert(0, str(REPO))

from bench.harness import generate_zone, loadavg, run, today_serial, write_atomic  # noqa: E402
from duo_ods.config.load import load_config  # noqa: E402
from duo_ods.dns.query import soa_serial  # noqa: E402
from duo_ods.dns.tsig import transfer_key  # noqa: E402
from duo_ods.protocol import ops as P  # noqa: E402
from duo_ods.protocol.client import NodeClient  # noqa: E402
from duo_ods.transport import transport_for  # noqa: E402
from duo_ods.zones.manage import check_file, secondary_serials, served_serials  # noqa: E402
from duo_ods.zones.serial import next_serial  # noqa: E402
from duo_ods.zones.validate import verify_zone_text  # noqa: E402

log = logging.getLogger("latency_probe")
ZONE = "lat.test"


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 4),
        "min_s": round(min(values), 4),
        "max_s": round(max(values), 4),
    }


def timed(action: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.monotonic()
        action()
        out.append(time.monotonic() - started)
    return out


def until(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.01) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not within the timeout")
        time.sleep(every)
    return time.monotonic() - started


def probe(lab_dir: Path, records: int, runs: int) -> dict[str, Any]:
    status = json.loads(
        run([sys.executable, "-m", "duo_ods", "--json", "lab", "status", "--dir", str(lab_dir)]).stdout
    )
    duo = load_config(Path(status["config"]))
    input_dir = Path(status["input_dir"])
    path = input_dir / ZONE
    write_atomic(path, generate_zone(ZONE, records, today_serial(), ttl=300, width=4, www="192.0.2.1"))
    key = transfer_key(duo)
    a = duo.nodes["a"]
    log.info("waiting for both signers to serve %s", ZONE)
    until(lambda: all(s is not None for s in served_serials(duo, ZONE).values()), timeout=120, every=0.2)
    sec = duo.config.secondaries[0]
    until(lambda: soa_serial(sec.address, sec.port, ZONE) is not None, timeout=120, every=0.2)
    time.sleep(2)  # the watchers' key making and relay syncs settle
    samples: dict[str, list[float]] = {}
    with NodeClient(transport_for(duo)) as client:
        client.call("a", P.ZONE_LIST)  # the agent starts (the watcher's runs all along)
        checked = check_file(duo, ZONE, path, input_dir=input_dir)
        samples["input check of the file (watcher, in process)"] = timed(
            lambda: check_file(duo, ZONE, path, input_dir=input_dir), runs
        )
        samples["the node's check of the checked text (agent, in process here)"] = timed(
            lambda: verify_zone_text(checked.text, ZONE, source="probe"), runs
        )
        samples["ZONE_LIST to node a's agent"] = timed(lambda: client.call("a", P.ZONE_LIST), runs)
        samples["SOA of both signers (TSIG)"] = timed(lambda: served_serials(duo, ZONE), runs)
        samples["SOA of every secondary"] = timed(lambda: secondary_serials(duo, ZONE), runs)
        update, served, at_secondary = [], [], []
        for _ in range(runs):
            known = [s for s in served_serials(duo, ZONE).values() if s is not None]
            target = next_serial([*known, checked.serial], duo.config.policy.serial)
            request = P.ZoneUpdateRequest(zone=ZONE, text=checked.text, serial=target)
            started = time.monotonic()
            client.call("a", P.ZONE_UPDATE, request)
            update.append(time.monotonic() - started)
            served.append(until(lambda t=target: soa_serial(a.address, a.port, ZONE, key, 1.0) == t))
            at_secondary.append(
                until(lambda t=target: soa_serial(sec.address, sec.port, ZONE, None, 1.0) == t)
            )
            time.sleep(1.0)
        samples["ZONE_UPDATE to node a's agent (node check, write, sign request)"] = update
        samples["then until signer a serves the serial (10 ms polls)"] = served
        samples["then until the secondary serves it (relays, NOTIFY, AXFR)"] = at_secondary
    return {k: {**stats(v), "runs": [round(x, 4) for x in v]} for k, v in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--base-address", default="127.0.15.30")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    lab_dir = Path(tempfile.mkdtemp(prefix="latency-probe-")) / "lab"
    cli = [sys.executable, "-m", "duo_ods"]
    run([*cli, "lab", "up", "--dir", str(lab_dir), "--base-address", args.base_address], timeout=600)
    try:
        result = {"load_start": loadavg(), **probe(lab_dir, args.records, args.runs), "load_end": loadavg()}
    finally:
        run([*cli, "lab", "down", "--dir", str(lab_dir)], timeout=300, check=False)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
