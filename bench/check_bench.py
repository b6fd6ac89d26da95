"""Check benchmark (issue 4): `ods-duo check` against `ldns-verify-zone` on both signers' copies.

Run from the repository folder, as root (the lab needs ODS, SoftHSM and port 53 on loopback):
    .venv/bin/python bench/check_bench.py [--records 100000] [--rounds 3] [--out bench/results/check.md]
It takes 10 to 15 minutes (most of it the two signers signing the zone once, and dnspython
reading AXFRs while waiting for that). Each run adds a section at the top of --out (earlier runs
and notes above them stay); --label names the run ("before", ...).

In one run on this machine:
  1. `ods-duo lab up` on --base-address (default 127.0.0.100: nodes on .101 and .102, port 53),
     a deterministic zone of --records records (bench.test: hosts cycling A/AAAA/TXT/MX,
     plus delegations with and without DS, and glue), `zone add`, `key create`, then wait until
     both nodes serve it signed (AXFR with the lab's TSIG key, RRSIG count stable).
  2. Save both nodes' AXFRs as zone files (not timed).
  3. Per round: `ods-duo --config LAB/duo-signers.toml --json check bench.test`, where
     duo-signers.toml is the lab's duo.toml without its secondaries (they only carry the zones
     of lab up; and ldns-verify-zone gets the two signers' copies) (wall clock, and the CPU
     time of it and its children from getrusage(RUSAGE_CHILDREN); its time includes its own two
     AXFRs and the enforcer calls for the DS), then `ldns-verify-zone` on node a's file and then
     on node b's file, one after the other (wall clock and CPU). The ratio is check's wall time
     over the sum of both ldns-verify-zone wall times, in the same round; the goal is <= 1.0.
  4. Always `ods-duo lab down`.

The whole machine's CPU use during each measurement is noted too: the machine may be shared,
and another benchmark running at the same time shows there.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.version
import dns.zone

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.harness from this checkout
    sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    Frozen,
    Tsig,
    freeze,
    generate_zone,
    machine_busy_seconds,
    machine_info,
    machine_line,
    other_work,
    prepend_section,
    require_root,
    run,
    setup_logging,
    source_text,
    today_serial,
)

ZONE = "bench.test"

log = logging.getLogger("check_bench")


# --------------------------------------------------------------------------- the lab


@dataclass
class Served:
    serial: int
    records: int
    rrsigs: int
    dnskeys: int


def axfr(address: str, port: int, zone: str, tsig: Tsig | None) -> dns.zone.Zone:
    origin = dns.name.from_text(zone)
    keyring, keyname = (tsig.keyring(), tsig.name) if tsig else (None, None)
    messages = dns.query.xfr(
        address, origin, port=port, lifetime=120, relativize=False, keyring=keyring, keyname=keyname
    )
    return dns.zone.from_xfr(messages, relativize=False)


def served(address: str, port: int, zone: str, tsig: Tsig | None) -> Served | None:
    try:
        z = axfr(address, port, zone, tsig)
    except (dns.exception.DNSException, OSError, EOFError):
        return None
    rrsigs = records = 0
    for _name, _ttl, rdata in z.iterate_rdatas():
        records += 1
        rrsigs += rdata.rdtype == dns.rdatatype.RRSIG
    origin = dns.name.from_text(zone)
    keys = z.get_rdataset(origin, dns.rdatatype.DNSKEY)
    soa = z.get_rdataset(origin, dns.rdatatype.SOA)
    serial = int(soa[0].serial) if soa is not None else 0
    return Served(serial, records, rrsigs, len(keys) if keys is not None else 0)


class Lab:
    def __init__(self, frozen: Frozen, lab_dir: Path, base_address: str) -> None:
        self.frozen = frozen
        self.dir = lab_dir
        self.base_address = base_address
        self.config = lab_dir / "duo.toml"
        self.signers_config = lab_dir / "duo-signers.toml"
        self.nodes: dict[str, tuple[str, int]] = {}
        self.tsig: Tsig | None = None

    def cli(self, *args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.frozen.cli("--config", str(self.config), *args, timeout=timeout, check=check)

    def up(self) -> None:
        log.info("lab up in %s on %s", self.dir, self.base_address)
        self.frozen.cli("lab", "up", "--dir", str(self.dir), "--base-address", self.base_address)
        status = json.loads(self.frozen.cli("--json", "lab", "status", "--dir", str(self.dir)).stdout)
        self.nodes = {n["name"]: (n["address"], int(n["port"])) for n in status["nodes"]}
        key_file = self.dir / "secrets" / "duo-transfer.key"
        self.tsig = Tsig.read(key_file) if key_file.exists() else None
        # The lab's secondaries serve only the zones of lab up; check the two signers, as ldns does.
        without = re.sub(
            r"\n\[\[secondaries\]\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", self.config.read_text() + "\n"
        )
        self.signers_config.write_text(without)

    def down(self) -> None:
        if self.config.exists():
            log.info("lab down")
            self.frozen.cli("lab", "down", "--dir", str(self.dir), check=False)

    def wait_signed(self, zone: str, timeout: float) -> dict[str, Served]:
        """Until every node serves the zone with 2 DNSKEYs and the same RRSIG count twice in a row."""
        deadline = time.monotonic() + timeout
        last: dict[str, Served | None] = {}
        while time.monotonic() < deadline:
            now = {name: served(addr, port, zone, self.tsig) for name, (addr, port) in self.nodes.items()}
            done = all(
                s is not None and s.dnskeys >= 2 and s.rrsigs > 0 and last.get(n) == s for n, s in now.items()
            )
            log.info(
                "served: %s",
                ", ".join(f"{n}={s.rrsigs if s else '-'} RRSIGs" for n, s in now.items()),
            )
            if done:
                return {n: s for n, s in now.items() if s is not None}
            last = now
            time.sleep(5)
        raise RuntimeError(f"{zone} not signed and stable on every node in {timeout} s")


# --------------------------------------------------------------------------- measurements


@dataclass
class Timed:
    what: str
    wall_s: float
    cpu_s: float  # user + system of the process and its waited-for children
    machine_cpu_s: float  # every process on the machine during the same time
    returncode: int
    note: str = ""

    @property
    def other_cpu_s(self) -> float:
        """CPU time of other work on the machine meanwhile (noise)."""
        return max(0.0, self.machine_cpu_s - self.cpu_s)


def timed(
    what: str, argv: Sequence[str], timeout: float = 1800.0, frozen: Frozen | None = None
) -> tuple[Timed, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds()
    started = time.perf_counter()
    where = {"env": frozen.env, "cwd": frozen.workdir} if frozen is not None else {}
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **where)
    wall = time.perf_counter() - started
    busy = machine_busy_seconds() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = Timed(what, wall, cpu, busy, proc.returncode)
    log.info("%s: %.2f s wall, %.2f s CPU, exit %d", what, wall, cpu, proc.returncode)
    return result, proc.stdout + proc.stderr


@dataclass
class Round:
    check: Timed
    ldns: list[Timed] = field(default_factory=list)

    @property
    def ldns_wall_s(self) -> float:
        return sum(t.wall_s for t in self.ldns)

    @property
    def ratio(self) -> float:
        return self.check.wall_s / self.ldns_wall_s


def measure_round(lab: Lab, files: dict[str, Path]) -> Round:
    argv = [*lab.frozen.argv, "--config", str(lab.signers_config), "--json", "check", ZONE]
    check, out = timed("ods-duo check", argv, frozen=lab.frozen)
    try:
        report = json.loads(out[out.index("{") :])["zones"][ZONE]
        check.note = (
            "ok" if report["ok"] else "NOT ok: " + "; ".join(p["message"] for p in report["problems"])
        )
        check.note += f" (signatures {report['signatures']})"
    except (ValueError, KeyError) as exc:
        check.note = f"unreadable output ({exc}): {out[-300:]}"
    result = Round(check)
    for node, path in files.items():
        t, out = timed(f"ldns-verify-zone {node}", ["ldns-verify-zone", str(path)])
        t.note = out.strip().splitlines()[-1] if out.strip() else ""
        result.ldns.append(t)
    return result


def save_axfr(address: str, port: int, tsig: Tsig | None, path: Path) -> int:
    """The node's AXFR as a zone file (absolute names); returns the number of records."""
    z = axfr(address, port, ZONE, tsig)
    z.to_file(str(path), relativize=False, want_origin=True)
    return sum(1 for _ in z.iterate_rdatas())


# --------------------------------------------------------------------------- reporting


def run_info(frozen: Frozen) -> dict[str, str]:
    """The machine (bench.harness), the versions that matter here, the code measured."""
    others = other_work([str(frozen.workdir)])
    return {
        "machine": machine_line(machine_info()),
        "python": platform.python_version(),
        "dnspython": dns.version.version,
        "ldns": run(["ldns-verify-zone", "-v"], check=False).stdout.strip(),
        "other work at the start": ", ".join(f"{n} x {k}" for k, n in sorted(others.items())) or "none",
        "code": source_text(frozen.info),
    }


def section(label: str, info: dict[str, str], zone_info: str, rounds: list[Round]) -> str:
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M')}: {label}",
        "",
        f"{info.pop('code')}. {zone_info}",
        "",
        info.pop("machine") + ". " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "| round | check wall s | check CPU s | ldns a wall s | ldns b wall s | ldns a+b wall s "
        "| ldns CPU s | ratio check/(a+b) | other CPU s on the machine meanwhile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        other = r.check.other_cpu_s + sum(t.other_cpu_s for t in r.ldns)
        lines.append(
            f"| {i} | {r.check.wall_s:.2f} | {r.check.cpu_s:.2f} | {r.ldns[0].wall_s:.2f} | "
            f"{r.ldns[1].wall_s:.2f} | {r.ldns_wall_s:.2f} | {sum(t.cpu_s for t in r.ldns):.2f} | "
            f"**{r.ratio:.2f}** | {other:.1f} |"
        )
    if len(rounds) > 1:
        lines += ["", f"Median ratio over the rounds: **{statistics.median(r.ratio for r in rounds):.2f}**."]
    lines += ["", "Outputs:", ""]
    for i, r in enumerate(rounds, 1):
        lines.append(f"- round {i}: check exit {r.check.returncode}, {r.check.note}")
        lines += [f"  - {t.what}: exit {t.returncode}, {t.note}" for t in r.ldns]
    return "\n".join(lines) + "\n"


HEADER = """# `ods-duo check` vs `ldns-verify-zone` (issue 4)

Produced by `bench/check_bench.py` (how to run: its docstring). Newest run first; each run
measures check and both ldns-verify-zone runs in the same rounds, so each ratio is from one run.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "check.md")
    parser.add_argument("--label", default="run", help="a name for this run in the results")
    parser.add_argument("--base-address", default="127.0.0.100", help="the lab's base: nodes on +1 and +2")
    parser.add_argument("--timeout", type=float, default=900.0, help="for the signing")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--source", default="worktree", help="worktree or a git revision to measure")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    require_root(parser)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="check-bench-"))).resolve()
    log.info("work folder %s", workdir)
    frozen = freeze(workdir, args.source)
    info = run_info(frozen)
    lab = Lab(frozen, workdir / "lab", args.base_address)
    try:
        zone_file = workdir / f"{ZONE}.zone"
        zone_file.write_text(generate_zone(ZONE, args.records, today_serial(), delegations=True))
        lab.up()
        lab.cli("zone", "add", ZONE, "--file", str(zone_file))
        lab.cli("key", "create", ZONE)
        started = time.monotonic()
        state = lab.wait_signed(ZONE, args.timeout)
        log.info("signed on every node in %.0f s", time.monotonic() - started)
        files = {}
        counts = {}
        for node, (address, port) in lab.nodes.items():
            files[node] = workdir / f"axfr-{node}.zone"
            counts[node] = save_axfr(address, port, lab.tsig, files[node])
        zone_info = (
            f"Zone {ZONE}: {args.records} unsigned records; served signed: "
            + ", ".join(
                f"{n} {counts[n]} RRs ({s.rrsigs} RRSIGs, serial {s.serial})" for n, s in state.items()
            )
            + "."
        )
        rounds = [measure_round(lab, files) for _ in range(args.rounds)]
    finally:
        lab.down()
    prepend_section(args.out, HEADER, section(args.label, info, zone_info, rounds))
    for i, r in enumerate(rounds, 1):
        log.info(
            "round %d: check %.2f s, ldns a+b %.2f s, ratio %.2f", i, r.check.wall_s, r.ldns_wall_s, r.ratio
        )
    log.info("results in %s", args.out)
    return 0 if all(r.check.returncode == 0 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
