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
import os
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
if str(REPO) not in sys.path:  # run as a script: use this checkout's duo_ods
    sys.path.insert(0, str(REPO))

from duo_ods.dns.tsig import TsigKey, read_tsig_key  # noqa: E402

ZONE = "bench.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")

log = logging.getLogger("check_bench")


def run(argv: Sequence[str], timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an argument list; on failure raise with its output."""
    log.debug("run %s", " ".join(argv))
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def generate_zone(zone: str, records: int, serial: int) -> str:
    """A deterministic unsigned zone of `records` records.

    Apex: SOA, 2 NS, MX; ns1/ns2 A; then names h000000.. cycling A, AAAA, TXT, MX; every 1000th
    name is a delegation instead (NS, plus DS on every other one and glue on every other one).
    """
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 3600",
        f"@ IN SOA ns1 hostmaster {serial} 3600 600 864000 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        "@ IN MX 10 ns1",
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 198.51.100.53",
    ]
    count = len(lines) - 2  # records so far ($ORIGIN and $TTL are not records)
    i = 0
    while count < records:
        name = f"h{i:06d}"
        if i % 1000 == 999 and records - count >= 3:
            lines.append(f"{name} IN NS ns.{name}")
            if (i // 1000) % 2:
                lines.append(f"{name} IN DS {i % 65536} 13 2 {i:064X}")
            else:
                lines.append(f"{name} IN NS ns.example.net.")
            lines.append(f"ns.{name} IN A 192.0.2.{i % 250 + 1}")  # glue
            count += 3
        else:
            kind = i % 4
            if kind == 0:
                lines.append(f"{name} IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
            elif kind == 1:
                lines.append(f"{name} IN AAAA 2001:db8::{i >> 16:x}:{i & 0xFFFF:x}")
            elif kind == 2:
                lines.append(f'{name} IN TXT "bench record {i}"')
            else:
                lines.append(f"{name} IN MX 10 ns1")
            count += 1
        i += 1
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the lab


@dataclass
class Served:
    serial: int
    records: int
    rrsigs: int
    dnskeys: int


def axfr(address: str, port: int, zone: str, tsig: TsigKey | None) -> dns.zone.Zone:
    origin = dns.name.from_text(zone)
    keyring, keyname = (tsig.keyring(), tsig.name) if tsig else (None, None)
    messages = dns.query.xfr(
        address, origin, port=port, lifetime=120, relativize=False, keyring=keyring, keyname=keyname
    )
    return dns.zone.from_xfr(messages, relativize=False)


def served(address: str, port: int, zone: str, tsig: TsigKey | None) -> Served | None:
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
    def __init__(self, ods_duo: Path, lab_dir: Path, base_address: str) -> None:
        self.ods_duo = ods_duo
        self.dir = lab_dir
        self.base_address = base_address
        self.config = lab_dir / "duo.toml"
        self.signers_config = lab_dir / "duo-signers.toml"
        self.nodes: dict[str, tuple[str, int]] = {}
        self.tsig: TsigKey | None = None

    def cli(self, *args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(self.ods_duo), "--config", str(self.config), *args], timeout=timeout, check=check)

    def up(self) -> None:
        log.info("lab up in %s on %s", self.dir, self.base_address)
        run([str(self.ods_duo), "lab", "up", "--dir", str(self.dir), "--base-address", self.base_address])
        status = json.loads(
            run([str(self.ods_duo), "--json", "lab", "status", "--dir", str(self.dir)]).stdout
        )
        self.nodes = {n["name"]: (n["address"], int(n["port"])) for n in status["nodes"]}
        key_file = self.dir / "secrets" / "duo-transfer.key"
        self.tsig = read_tsig_key(key_file) if key_file.exists() else None
        # The lab's secondaries serve only the zones of lab up; check the two signers, as ldns does.
        without = re.sub(
            r"\n\[\[secondaries\]\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", self.config.read_text() + "\n"
        )
        self.signers_config.write_text(without)

    def down(self) -> None:
        if self.config.exists():
            log.info("lab down")
            run([str(self.ods_duo), "lab", "down", "--dir", str(self.dir)], check=False)

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


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


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


def timed(what: str, argv: Sequence[str], timeout: float = 1800.0) -> tuple[Timed, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_seconds()
    started = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
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
    argv = [str(lab.ods_duo), "--config", str(lab.signers_config), "--json", "check", ZONE]
    check, out = timed("ods-duo check", argv)
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


def save_axfr(address: str, port: int, tsig: TsigKey | None, path: Path) -> int:
    """The node's AXFR as a zone file (absolute names); returns the number of records."""
    z = axfr(address, port, ZONE, tsig)
    z.to_file(str(path), relativize=False, want_origin=True)
    return sum(1 for _ in z.iterate_rdatas())


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, str]:
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        "?",
    )  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    ldns = run(["ldns-verify-zone", "-v"], check=False).stdout.strip()
    return {
        "CPU": f"{os.cpu_count()} x {model}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dnspython": dns.version.version,
        "ldns": ldns,
        "load average at start": Path("/proc/loadavg").read_text().split()[0],
        "code": git_state(),
    }


def git_state() -> str:
    """The checkout the `ods-duo` under test runs from (at the start of the run)."""
    import duo_ods  # noqa: PLC0415 (whichever the interpreter finds: this checkout unless PYTHONPATH says)

    where = Path(duo_ods.__file__).resolve().parent.parent
    head = run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    if not head:
        return f"{where} (not a git checkout)"
    dirty = run(["git", "-C", str(where), "status", "--porcelain", "duo_ods/check"], check=False).stdout
    return f"{where} at {head}" + (" with local changes in duo_ods/check" if dirty.strip() else "")


def section(label: str, info: dict[str, str], zone_info: str, rounds: list[Round]) -> str:
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M')}: {label}",
        "",
        f"Code: {info.pop('code')}. {zone_info}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
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


def write_results(out: Path, new_section: str) -> None:
    """Put the new run on top; keep the earlier runs (and any notes written above them)."""
    old = out.read_text() if out.exists() else HEADER
    match = re.search(r"^## ", old, flags=re.MULTILINE)
    head, rest = (old[: match.start()], old[match.start() :]) if match else (old.rstrip() + "\n\n", "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + new_section + ("\n" + rest if rest else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "check.md")
    parser.add_argument("--label", default="run", help="a name for this run in the results")
    parser.add_argument("--base-address", default="127.0.0.100", help="the lab's base: nodes on +1 and +2")
    parser.add_argument("--timeout", type=float, default=900.0, help="for the signing")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--ods-duo", type=Path, default=Path(sys.executable).parent / "ods-duo")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if os.geteuid() != 0:
        parser.error("run as root (ODS, SoftHSM, port 53)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="check-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("work folder %s", workdir)
    info = machine_info()
    lab = Lab(args.ods_duo, workdir / "lab", args.base_address)
    try:
        zone_file = workdir / f"{ZONE}.zone"
        zone_file.write_text(generate_zone(ZONE, args.records, int(time.strftime("%Y%m%d")) * 100))
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
    write_results(args.out, section(args.label, info, zone_info, rounds))
    for i, r in enumerate(rounds, 1):
        log.info(
            "round %d: check %.2f s, ldns a+b %.2f s, ratio %.2f", i, r.check.wall_s, r.ldns_wall_s, r.ratio
        )
    log.info("results in %s", args.out)
    return 0 if all(r.check.returncode == 0 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
