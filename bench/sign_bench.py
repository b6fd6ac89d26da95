"""Signing benchmark (issue 3): the duo, one plain ODS instance, and OpenSSL's raw ECDSA P-256 rate.

In one run on this machine:
  1. `openssl speed ecdsap256`, one core and `-multi N` (all cores): the raw sign rate.
  2. The lab duo (`ods-duo lab up`), both nodes signing the same generated zone at the same
     time, once per (worker_threads, signer_threads) setting of the rendered conf.xml.
  3. One plain OpenDNSSEC instance (its own token, ODS makes its own keys: no
     <ManualKeyGeneration/>), the same zone, the same thread settings.

Each measurement adds a fresh zone (fresh name, fresh keys, nothing to reuse) and times,
per node, from the moment the enforcer writes the zone's signconf (its mtime: the signer
starts then) until the node's listener answers SOA for the zone (the signed zone is out).
Signatures are counted in an AXFR of each node afterwards, and compared with the signer's
own [STATS] log line (RRSIG new=..., time in whole seconds). The CPU time of each signer and
of the whole machine is sampled too, so the noise from other work on a shared machine shows.

Run from the repository folder, as root:
    .venv/bin/python bench/sign_bench.py [--records 100000] [--out bench/results/sign.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.version

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: use this checkout's duo_ods
    sys.path.insert(0, str(REPO))

from duo_ods.config.load import load_config  # noqa: E402
from duo_ods.config.model import NodeConfig, PolicyConfig  # noqa: E402
from duo_ods.config.resolve import Node, NodePaths  # noqa: E402
from duo_ods.node import daemons  # noqa: E402
from duo_ods.node.secrets import ensure_secret  # noqa: E402
from duo_ods.node.setup import init_enforcer_db, make_directories  # noqa: E402
from duo_ods.node.token import init_token, write_softhsm_conf  # noqa: E402
from duo_ods.ods.client import Enforcer  # noqa: E402
from duo_ods.render.engine import render, write_atomic  # noqa: E402
from duo_ods.render.validate import check_ods_xml  # noqa: E402
from duo_ods.render.views import addns_view, conf_view, kasp_view, zonelist_view  # noqa: E402

log = logging.getLogger("sign_bench")

CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_SETTINGS = "2,2 1,1 1,2 2,4 4,4"  # (worker_threads, signer_threads); the first is the default
POLL_INTERVAL = 0.05

STATS_RE = re.compile(
    r"\[STATS\] (?P<zone>\S+) (?P<serial>\d+) "
    r"RR\[count=(?P<rr_count>\d+) time=(?P<rr_time>\d+)\(sec\)\] "
    r"NSEC3\[count=(?P<nsec3_count>\d+) time=(?P<nsec3_time>\d+)\(sec\)\] "
    r"RRSIG\[new=(?P<rrsig_new>\d+) reused=(?P<rrsig_reused>\d+) time=(?P<rrsig_time>\d+)\(sec\) "
    r"avg=(?P<rrsig_avg>\d+)\(sig/sec\)\] "
    r"TOTAL\[time=(?P<total_time>\d+)\(sec\)\]"
)


# --------------------------------------------------------------------------- small helpers


def run(argv: Sequence[str], timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an argument list; on failure raise with its output."""
    log.debug("run %s", " ".join(argv))
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_gone(pids: list[int], timeout: float = 20.0) -> None:
    """Wait until the processes are gone from /proc, zombies included.

    `node stop` counts a zombie as stopped, but ods-enforcerd sometimes segfaults on SIGTERM
    and leaves its pid file; while the zombie exists, a new enforcer sees that pid "running"
    (kill(pid, 0) succeeds) and refuses to start ("Pidfile exists and process with PID is running").
    """
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def parse_settings(text: str) -> list[tuple[int, int]]:
    settings = []
    for item in text.split():
        worker, signer = item.split(",")
        settings.append((int(worker), int(signer)))
    return settings


def rendered_threads(conf_xml: Path) -> tuple[int, int]:
    """(WorkerThreads, SignerThreads) of <Signer> in a rendered conf.xml."""
    root = ElementTree.parse(conf_xml).getroot()  # noqa: S314 (our own rendered file)
    signer = root.find("Signer")
    assert signer is not None
    return int(signer.findtext("WorkerThreads", "0")), int(signer.findtext("SignerThreads", "0"))


# --------------------------------------------------------------------------- the zone


def generate_zone(zone: str, records: int, serial: int) -> str:
    """A deterministic unsigned zone of `records` records, one RRset per owner name.

    Apex: SOA, 2 NS; ns1/ns2 A; then names h000000.. cycling A, AAAA, TXT, MX.
    """
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 3600",
        f"@ IN SOA ns1 hostmaster {serial} 3600 600 864000 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 198.51.100.53",
    ]
    for i in range(records - 5):
        name = f"h{i:06d}"
        kind = i % 4
        if kind == 0:
            lines.append(f"{name} IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        elif kind == 1:
            lines.append(f"{name} IN AAAA 2001:db8::{i:x}")
        elif kind == 2:
            lines.append(f'{name} IN TXT "bench record {i}"')
        else:
            lines.append(f"{name} IN MX 10 ns1")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- one signer being watched


@dataclass
class SignStats:
    """The signer's own [STATS] line for the zone (times in whole seconds)."""

    serial: int
    rr_count: int
    rr_time: int
    nsec3_count: int
    nsec3_time: int
    rrsig_new: int
    rrsig_reused: int
    rrsig_time: int
    rrsig_avg: int
    total_time: int


@dataclass
class AxfrCount:
    serial: int
    records: int
    rrsig: int
    nsec3: int
    seconds: float


@dataclass
class NodeResult:
    node: str
    zone: str
    threads: tuple[int, int]
    signconf_at: float | None = None  # enforcer wrote the signconf: the signer starts
    served_at: float | None = None  # the listener answered SOA for the zone
    served_serial: int | None = None
    signer_cpu_s: float | None = None
    axfr: AxfrCount | None = None
    stats: SignStats | None = None

    @property
    def wall_s(self) -> float | None:
        if self.signconf_at is None or self.served_at is None:
            return None
        return self.served_at - self.signconf_at

    @property
    def signatures(self) -> int | None:
        return self.axfr.rrsig if self.axfr else (self.stats.rrsig_new if self.stats else None)

    @property
    def rate(self) -> float | None:
        """Signatures per second, end to end (signconf written -> zone served)."""
        wall, sigs = self.wall_s, self.signatures
        return sigs / wall if wall and sigs else None

    @property
    def rate_per_cpu_s(self) -> float | None:
        sigs = self.signatures
        return sigs / self.signer_cpu_s if sigs and self.signer_cpu_s else None

    @property
    def daemon_rate(self) -> float | None:
        """The signer's own count over its own RRSIG time (whole seconds: coarse)."""
        if self.stats is None or self.stats.rrsig_time == 0:
            return None
        return self.stats.rrsig_new / self.stats.rrsig_time

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            wall_s=self.wall_s,
            signatures=self.signatures,
            rate=self.rate,
            rate_per_cpu_s=self.rate_per_cpu_s,
            daemon_rate=self.daemon_rate,
        )
        return data


@dataclass
class Watched:
    """What the poller needs to know about one signer."""

    name: str
    address: str
    port: int
    signconf: Path
    log_file: Path
    signer_pid: int
    result: NodeResult
    log_offset: int = 0
    cpu_start: float = 0.0


def soa_serial(address: str, port: int, zone: str) -> int | None:
    """The SOA serial the listener serves for the zone, or None while it serves none."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        reply = dns.query.udp(query, address, port=port, timeout=0.3)
    except (dns.exception.Timeout, OSError):
        return None
    if reply.rcode() != dns.rcode.NOERROR:
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def axfr_count(address: str, port: int, zone: str) -> AxfrCount:
    started = time.monotonic()
    counts: Counter[int] = Counter()
    serial = 0
    for message in dns.query.xfr(address, zone, port=port, lifetime=300, relativize=False):
        for rrset in message.answer:
            counts[rrset.rdtype] += len(rrset)
            if rrset.rdtype == dns.rdatatype.SOA and not serial:
                serial = int(rrset[0].serial)
    counts[dns.rdatatype.SOA] -= 1  # AXFR sends the SOA first and last
    return AxfrCount(
        serial=serial,
        records=sum(counts.values()),
        rrsig=counts[dns.rdatatype.RRSIG],
        nsec3=counts[dns.rdatatype.NSEC3],
        seconds=time.monotonic() - started,
    )


def read_stats(log_file: Path, offset: int, zone: str) -> SignStats | None:
    """The first [STATS] line for the zone written after offset."""
    with log_file.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    for match in STATS_RE.finditer(text):
        if match["zone"] == zone:
            values = {k: int(v) for k, v in match.groupdict().items() if k != "zone"}
            return SignStats(**values)
    return None


@dataclass
class Window:
    """One measurement: the signers watched together, and the machine around them."""

    label: str
    zone: str
    nodes: list[NodeResult]
    trigger_started: float = 0.0
    trigger_ended: float = 0.0
    machine_busy_s: float = 0.0
    load_before: float = 0.0
    load_after: float = 0.0
    other_busy_s: float = 0.0  # machine CPU seconds not spent by the signers watched

    @property
    def span_s(self) -> float | None:
        starts = [n.signconf_at for n in self.nodes]
        ends = [n.served_at for n in self.nodes]
        if None in starts or None in ends:
            return None
        return max(e for e in ends if e is not None) - min(s for s in starts if s is not None)

    @property
    def signatures(self) -> int:
        return sum(n.signatures or 0 for n in self.nodes)

    @property
    def aggregate_rate(self) -> float | None:
        span = self.span_s
        return self.signatures / span if span else None

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "zone": self.zone,
            "nodes": [n.summary() for n in self.nodes],
            "trigger_s": self.trigger_ended - self.trigger_started,
            "span_s": self.span_s,
            "signatures": self.signatures,
            "aggregate_rate": self.aggregate_rate,
            "machine_busy_s": self.machine_busy_s,
            "other_busy_s": self.other_busy_s,
            "load_before": self.load_before,
            "load_after": self.load_after,
        }


def measure(label: str, zone: str, watched: list[Watched], trigger: Sequence[str], timeout: float) -> Window:
    """Start `trigger` (the command after which the signers sign), poll until every node serves."""
    window = Window(label=label, zone=zone, nodes=[w.result for w in watched])
    for w in watched:
        w.log_offset = w.log_file.stat().st_size
        w.cpu_start = cpu_seconds(w.signer_pid)
        if w.signconf.exists():
            raise RuntimeError(f"{w.signconf} exists before the measurement")
    window.load_before = loadavg()
    busy_start = machine_busy_seconds()
    window.trigger_started = time.time()
    log.info("%s: %s", label, " ".join(trigger))
    proc = subprocess.Popen(list(trigger), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None and not window.trigger_ended:
                window.trigger_ended = time.time()
                if proc.returncode != 0:
                    output = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"{' '.join(trigger)} exited {proc.returncode}: {output}")
            for w in watched:
                r = w.result
                if r.signconf_at is None and w.signconf.exists():
                    r.signconf_at = w.signconf.stat().st_mtime_ns / 1e9
                if r.served_at is None:
                    serial = soa_serial(w.address, w.port, zone)
                    if serial is not None:
                        r.served_at = time.time()
                        r.served_serial = serial
                        r.signer_cpu_s = cpu_seconds(w.signer_pid) - w.cpu_start
                        log.info("%s: node %s serves %s serial %d", label, w.name, zone, serial)
            if window.trigger_ended and all(w.result.served_at is not None for w in watched):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: not every node served {zone} within {timeout:.0f} s")
            time.sleep(POLL_INTERVAL)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    window.machine_busy_s = machine_busy_seconds() - busy_start
    window.load_after = loadavg()
    window.other_busy_s = window.machine_busy_s - sum(n.signer_cpu_s or 0 for n in window.nodes)
    for w in watched:
        for _ in range(50):  # the STATS line is written around the time the zone goes out
            w.result.stats = read_stats(w.log_file, w.log_offset, zone)
            if w.result.stats is not None:
                break
            time.sleep(0.1)
    # Only now, with every signer done, transfer (the transfers cost CPU).
    for w in watched:
        w.result.axfr = axfr_count(w.address, w.port, zone)
        r = w.result
        log.info(
            "%s: node %s wall %.2f s, %s signatures (STATS new=%s), %.0f sig/s, cpu %.2f s",
            label, w.name, r.wall_s or -1, r.signatures, r.stats.rrsig_new if r.stats else "?",
            r.rate or 0, r.signer_cpu_s or 0,
        )  # fmt: skip
        if r.axfr and r.served_serial != r.axfr.serial:
            log.warning("%s: node %s served serial %s, AXFR serial %s", label, w.name, r.served_serial, r.axfr.serial)
    return window


# --------------------------------------------------------------------------- raw OpenSSL


@dataclass
class OpenSSLSpeed:
    processes: int
    sign_per_s: float
    verify_per_s: float


def openssl_speed(seconds: int, processes: int) -> OpenSSLSpeed:
    argv = ["openssl", "speed", "-seconds", str(seconds)]
    if processes > 1:
        argv += ["-multi", str(processes)]
    argv.append("ecdsap256")
    log.info("raw: %s", " ".join(argv))
    out = run(argv, timeout=seconds * 4 + 60).stdout
    for line in out.splitlines():
        if "ecdsa (nistp256)" in line:
            numbers = line.split()
            return OpenSSLSpeed(processes, float(numbers[-2]), float(numbers[-1]))
    raise RuntimeError(f"no ecdsa (nistp256) line in openssl speed output:\n{out}")


# --------------------------------------------------------------------------- the duo (the lab)


class Duo:
    """The lab duo, driven through the ods-duo command line only."""

    def __init__(self, ods_duo: Path, lab_dir: Path, base_address: str) -> None:
        self.ods_duo = ods_duo
        self.dir = lab_dir
        self.base_address = base_address
        self.config = lab_dir / "duo.toml"
        self.nodes = ("a", "b")

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        return run([str(self.ods_duo), "--config", str(self.config), *args], timeout=timeout).stdout

    def up(self) -> None:
        log.info("duo: lab up in %s", self.dir)
        run([str(self.ods_duo), "lab", "up", "--dir", str(self.dir), "--base-address", self.base_address])

    def down(self) -> None:
        if self.config.exists():
            log.info("duo: lab down")
            run([str(self.ods_duo), "lab", "down", "--dir", str(self.dir)], check=False)

    def set_threads(self, worker: int, signer: int) -> None:
        """Write the thread settings into every [nodes.X] of duo.toml, then re-render and restart."""
        out: list[str] = []
        for line in self.config.read_text().splitlines():
            if re.match(r"\s*(worker_threads|signer_threads)\s*=", line):
                continue
            out.append(line)
            if re.fullmatch(r"\[nodes\.[a-z][a-z0-9-]*\]", line.strip()):
                out += [f"worker_threads = {worker}", f"signer_threads = {signer}"]
        text = "\n".join(out) + "\n"
        raw = tomllib.loads(text)
        assert all(n["worker_threads"] == worker and n["signer_threads"] == signer for n in raw["nodes"].values())
        self.config.write_text(text)
        duo = load_config(self.config)
        for name in self.nodes:
            node = duo.node(name)
            pids = [r.pid for d in daemons.DAEMONS if (r := daemons.running(node, d)) is not None]
            self.cli("node", "stop", name)
            wait_gone(pids)
            self.cli("node", "init", name)
            self.cli("node", "start", name)
            got = rendered_threads(duo.node(name).paths.conf_xml)
            if got != (worker, signer):
                raise RuntimeError(f"node {name}: conf.xml has threads {got}, wanted {(worker, signer)}")
        log.info("duo: nodes restarted with worker_threads=%d signer_threads=%d", worker, signer)

    def sign(self, zone: str, zone_file: Path, threads: tuple[int, int], timeout: float) -> Window:
        duo = load_config(self.config)
        self.cli("zone", "add", zone, "--file", str(zone_file))
        watched = []
        for name in self.nodes:
            node = duo.node(name)
            record = daemons.running(node, "signerd")
            if record is None:
                raise RuntimeError(f"node {name}: signer not running")
            watched.append(
                Watched(
                    name=name, address=node.address, port=node.port, signconf=node.paths.signconf(zone),
                    log_file=node.paths.log / "signerd.log", signer_pid=record.pid,
                    result=NodeResult(node=name, zone=zone, threads=threads),
                )  # fmt: skip
            )
        trigger = [str(self.ods_duo), "--config", str(self.config), "key", "create", zone]
        try:
            return measure(f"duo {threads}", zone, watched, trigger, timeout)
        finally:
            self.cli("zone", "remove", zone)


# --------------------------------------------------------------------------- one plain ODS instance


class Single:
    """One plain OpenDNSSEC: own token, ODS makes its own keys, started the way the lab starts nodes."""

    def __init__(self, base: Path, address: str, port: int, policy: PolicyConfig) -> None:
        self.policy = policy
        self.base = base
        self.address = address
        self.port = port
        self.node = self._node(2, 2)

    def _node(self, worker: int, signer: int) -> Node:
        config = NodeConfig(
            address=self.address, port=self.port, base_dir=str(self.base), token_label="BENCH-SINGLE",
            worker_threads=worker, signer_threads=signer,
        )  # fmt: skip
        return Node(
            name="single", config=config, paths=NodePaths(self.base),
            input_dir=self.base / "input", pin_file=self.base / "secrets" / "pin",
        )  # fmt: skip

    def configure(self, worker: int, signer: int) -> None:
        """(Re)write conf.xml etc. for these threads; the project's templates, minus ManualKeyGeneration."""
        self.node = node = self._node(worker, signer)
        p = node.paths
        make_directories(node)
        pin = ensure_secret(node.pin_file)
        so_pin = ensure_secret(p.secrets / "so-pin")
        write_softhsm_conf(p.softhsm_conf, p.tokens, "single")
        init_token(p.softhsm_conf, node.config.token_label, pin, so_pin, "single")
        init_enforcer_db(node)
        conf = render("conf.xml.j2", conf_view(node, pin))
        # Plain ODS: the enforcer makes its own keys.
        conf = re.sub(r"[ \t]*<!--[^>]*makes every key[^>]*-->\n", "", conf)
        conf = conf.replace("<ManualKeyGeneration/>", "")
        files = [
            (p.conf_xml, conf, "conf", 0o600),
            (p.kasp_xml, render("kasp.xml.j2", kasp_view(self.policy)), "kasp", 0o644),
            (p.zonelist_xml, render("zonelist.xml.j2", zonelist_view(node, self.policy.name, [])), "zonelist", 0o644),
            (p.addns_xml, render("addns.xml.j2", addns_view(node, [])), "addns", 0o600),
        ]
        for path, text, schema, mode in files:
            check_ods_xml(text, schema, str(path))
            write_atomic(path, text, mode)
        if rendered_threads(p.conf_xml) != (worker, signer):
            raise RuntimeError("single: conf.xml threads not as asked")

    def restart(self, worker: int, signer: int) -> None:
        pids = [r.pid for d in daemons.DAEMONS if (r := daemons.running(self.node, d)) is not None]
        daemons.stop(self.node)
        wait_gone(pids)
        self.configure(worker, signer)
        daemons.start(self.node)
        Enforcer(self.node.paths.enforcer_sock)("policy", "import")
        log.info("single: running with worker_threads=%d signer_threads=%d", worker, signer)

    def stop(self) -> None:
        if self.node.paths.state.exists():
            log.info("single: stop %s", daemons.stop(self.node))

    def sign(self, zone: str, zone_file: Path, threads: tuple[int, int], timeout: float) -> Window:
        p = self.node.paths
        unsigned = p.unsigned_zone(zone)
        shutil.copyfile(zone_file, unsigned)
        record = daemons.running(self.node, "signerd")
        if record is None:
            raise RuntimeError("single: signer not running")
        watched = [
            Watched(
                name="single", address=self.address, port=self.port, signconf=p.signconf(zone),
                log_file=p.log / "signerd.log", signer_pid=record.pid,
                result=NodeResult(node="single", zone=zone, threads=threads),
            )  # fmt: skip
        ]
        trigger = [
            "ods-enforcer", "-s", str(p.enforcer_sock), "zone", "add", "--zone", zone,
            "--policy", self.policy.name, "--signerconf", str(p.signconf(zone)),
            "--in-type", "File", "--input", str(unsigned), "--out-type", "DNS", "--output", str(p.addns_xml),
        ]  # fmt: skip
        try:
            return measure(f"single {threads}", zone, watched, trigger, timeout)
        finally:
            Enforcer(p.enforcer_sock)("zone", "delete", "--zone", zone)


# --------------------------------------------------------------------------- the run


@dataclass
class Results:
    started: str
    records: int
    machine: dict[str, Any]
    versions: dict[str, str]
    openssl: list[OpenSSLSpeed] = field(default_factory=list)
    duo: list[Window] = field(default_factory=list)
    single: list[Window] = field(default_factory=list)
    wall_total_s: float = 0.0
    error: str | None = None
    log_oddities: dict[str, list[str]] = field(default_factory=dict)


def log_oddities(workdir: Path) -> dict[str, list[str]]:
    """Crashes and error lines in the daemons' logs (timestamps and pids cut, duplicates counted)."""
    found: dict[str, list[str]] = {}
    for path in sorted(workdir.glob("**/log/*.log")):
        counts: Counter[str] = Counter()
        for line in path.read_text(errors="replace").splitlines():
            if "Segmentation fault" in line or "] error  :" in line:
                counts[re.sub(r"^\[[^]]*\] |\(pid: \d+\)|ods-\w+\[\d\]", "", line).strip()] += 1
        if counts:
            found[str(path.relative_to(workdir))] = [f"{n} x {text}" for text, n in counts.most_common(12)]
    return found


def machine_info() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def versions() -> dict[str, str]:
    out = run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n",
         "opendnssec-signer", "opendnssec-enforcer-sqlite3", "softhsm2", "openssl", "libssl3"],
        check=False,
    ).stdout  # fmt: skip
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    found["python"] = platform.python_version()
    found["dnspython"] = dns.version.version
    return found


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.monotonic()
    log.info("== %s", name)
    yield
    log.info("== %s done in %.1f s", name, time.monotonic() - started)


def best(windows: list[Window]) -> Window | None:
    rated = [w for w in windows if w.aggregate_rate]
    return max(rated, key=lambda w: w.aggregate_rate or 0) if rated else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sign.md")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"'W,S W,S ...' (default {DEFAULT_SETTINGS!r})")
    parser.add_argument("--single-settings", help="thread settings for the single instance (default: --settings)")
    parser.add_argument("--base-address", default="127.0.0.90", help="the lab's base: nodes on +1 and +2")
    parser.add_argument("--single-address", default="127.0.0.95")
    parser.add_argument("--openssl-seconds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="per measurement")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, tokens) afterwards")
    parser.add_argument("--ods-duo", type=Path, default=Path(sys.executable).parent / "ods-duo")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if os.geteuid() != 0:
        parser.error("run as root (ODS, SoftHSM, mount namespaces)")
    settings = parse_settings(args.settings)
    single_settings = parse_settings(args.single_settings) if args.single_settings else settings
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sign-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("work folder %s", workdir)

    results = Results(
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        records=args.records,
        machine=machine_info(),
        versions=versions(),
    )
    t0 = time.monotonic()
    serial = int(time.strftime("%Y%m%d")) * 100
    zones_dir = workdir / "zones"
    zones_dir.mkdir(exist_ok=True)

    def zone_file(zone: str) -> Path:
        path = zones_dir / zone
        path.write_text(generate_zone(zone, args.records, serial))
        return path

    duo = Duo(args.ods_duo, workdir / "lab", args.base_address)
    single: Single | None = None
    try:
        with step("raw OpenSSL ECDSA P-256"):
            results.openssl.append(openssl_speed(args.openssl_seconds, 1))
            results.openssl.append(openssl_speed(args.openssl_seconds, os.cpu_count() or 1))
        with step("duo"):
            duo.up()
            for i, (worker, signer) in enumerate(settings, 1):
                duo.set_threads(worker, signer)
                zone = f"bench-d{i}.test"
                results.duo.append(duo.sign(zone, zone_file(zone), (worker, signer), args.timeout))
            duo.down()
        with step("single"):
            policy = load_config(duo.config).config.policy  # the duo's policy, as rendered for the duo
            single = Single(workdir / "single", args.single_address, 53, policy)
            for i, (worker, signer) in enumerate(single_settings, 1):
                single.restart(worker, signer)
                zone = f"bench-s{i}.test"
                results.single.append(single.sign(zone, zone_file(zone), (worker, signer), args.timeout))
    except Exception as exc:
        results.error = f"{type(exc).__name__}: {exc}"
        log.exception("benchmark failed")
    finally:
        if single is not None:
            single.stop()
        duo.down()
        results.wall_total_s = time.monotonic() - t0
        results.log_oddities = log_oddities(workdir)
        write_results(results, args.out)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if results.error else 0


# --------------------------------------------------------------------------- the report


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def write_results(results: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    raw_one = next((o.sign_per_s for o in results.openssl if o.processes == 1), None)
    raw_all = next((o.sign_per_s for o in results.openssl if o.processes > 1), None)
    singles = {w.nodes[0].threads: w for w in results.single}
    best_duo, best_single = best(results.duo), best(results.single)

    data: dict[str, Any] = {
        "started": results.started,
        "records": results.records,
        "machine": results.machine,
        "versions": results.versions,
        "openssl": [asdict(o) for o in results.openssl],
        "duo": [w.summary() for w in results.duo],
        "single": [w.summary() for w in results.single],
        "best_duo_threads": best_duo.nodes[0].threads if best_duo else None,
        "best_single_threads": best_single.nodes[0].threads if best_single else None,
        "wall_total_s": results.wall_total_s,
        "error": results.error,
        "log_oddities": results.log_oddities,
    }
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")

    m = results.machine
    lines = [
        "# Signing benchmark (issue 3)",
        "",
        f"Run {results.started}, {results.wall_total_s / 60:.1f} min in all, by `bench/sign_bench.py "
        f"--records {results.records}`. Raw numbers: `{out.with_suffix('.json').name}` next to this file.",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, {m['memory_gb']} GB, kernel {m['kernel']}. "
        + ", ".join(f"{k} {v}" for k, v in results.versions.items())
        + ".",
        "",
        "The machine is shared: other work (the lead's tests) may have run during the measurements. "
        "`other CPU s` is the machine's busy CPU time during each measurement minus the watched signers' own; "
        "`sig/CPU-s` (signatures per second of signer CPU time) is the number least disturbed by that.",
    ]
    if results.error:
        lines += ["", f"**The run failed:** `{results.error}`; the tables hold what was measured before."]
    lines += ["", "## Raw limit: `openssl speed ecdsap256`", "", "| processes | sign/s | verify/s |", "|---|---|---|"]
    lines += [f"| {o.processes} | {_f(o.sign_per_s)} | {_f(o.verify_per_s)} |" for o in results.openssl]

    lines += [
        "",
        "## Per node",
        "",
        "Wall = from the enforcer writing the zone's signconf (its mtime) until the node's listener answers "
        "SOA for the signed zone; it includes reading the 100k records, NSEC3, signing and writing out. "
        "Signatures = RRSIGs in an AXFR of the node afterwards. STATS = the signer's own log line "
        "(`RRSIG new=N time=T(sec)`, whole seconds, so its rate is coarse).",
        "",
        "| run | threads (worker, signer) | node | signatures | wall s | sig/s | signer CPU s | sig/CPU-s "
        "| STATS new | STATS RR/NSEC3/RRSIG/total s | STATS sig/s | other CPU s | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, windows in (("duo", results.duo), ("single", results.single)):
        for w in windows:
            for n in w.nodes:
                s = n.stats
                stats_times = f"{s.rr_time}/{s.nsec3_time}/{s.rrsig_time}/{s.total_time}" if s else "-"
                lines.append(
                    f"| {kind} | {n.threads} | {n.node} | {_f(n.signatures)} | {_f(n.wall_s, 2)} | {_f(n.rate)} "
                    f"| {_f(n.signer_cpu_s, 2)} | {_f(n.rate_per_cpu_s)} | {_f(s.rrsig_new if s else None)} "
                    f"| {stats_times} | {_f(n.daemon_rate)} | {_f(w.other_busy_s, 1)} "
                    f"| {w.load_before:.2f}/{w.load_after:.2f} |"
                )

    lines += [
        "",
        "## Duo against single, per thread setting",
        "",
        "Per node = each duo node's sig/s over the single instance's at the same setting. Duo total = "
        "both nodes' signatures over the span from the first signconf to the last node serving. "
        f"Raw fractions are of the {m['nproc']}-process `openssl speed -multi` sign rate"
        + (f" ({_f(raw_all)}/s)" if raw_all else "")
        + " (the whole machine's raw limit), and of one core"
        + (f" ({_f(raw_one)}/s)" if raw_one else "")
        + ".",
        "",
        "| threads | duo a sig/s | duo b sig/s | duo total sig/s | single sig/s | per node a / b vs single "
        "| duo total / single | single / raw all cores | duo total / raw all cores | single / raw 1 core |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in results.duo:
        threads = w.nodes[0].threads
        single_window = singles.get(threads)
        single_rate = single_window.aggregate_rate if single_window else None
        node_rates = [n.rate for n in w.nodes]
        ratios = " / ".join(f"{r / single_rate:.2f}" if r and single_rate else "-" for r in node_rates)
        total = w.aggregate_rate
        lines.append(
            f"| {threads} | {_f(node_rates[0])} | {_f(node_rates[1] if len(node_rates) > 1 else None)} "
            f"| {_f(total)} | {_f(single_rate)} | {ratios} "
            f"| {f'{total / single_rate:.2f}' if total and single_rate else '-'} "
            f"| {_pct(single_rate / raw_all if single_rate and raw_all else None)} "
            f"| {_pct(total / raw_all if total and raw_all else None)} "
            f"| {_pct(single_rate / raw_one if single_rate and raw_one else None)} |"
        )
    lines += [
        "",
        "## Best setting",
        "",
        f"Duo: {best_duo.nodes[0].threads if best_duo else '-'} "
        f"({_f(best_duo.aggregate_rate if best_duo else None)} sig/s both nodes together). "
        f"Single: {best_single.nodes[0].threads if best_single else '-'} "
        f"({_f(best_single.aggregate_rate if best_single else None)} sig/s).",
        "",
    ]
    if results.log_oddities:
        lines += ["## Errors and crashes in the daemons' logs", ""]
        for path, items in results.log_oddities.items():
            lines += [f"- `{path}`:"] + [f"  - `{item}`" for item in items]
        lines.append("")
    out.write_text("\n".join(lines))
    log.info("results in %s and %s", out, out.with_suffix(".json"))


if __name__ == "__main__":
    sys.exit(main())
