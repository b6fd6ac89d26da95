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
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench.harness and bench.plain_ods; duo_ods from the frozen copy first
SRC_ENV = "SIGN_BENCH_SRC"  # set in the re-executed benchmark: the frozen copy of duo_ods it runs on
CWD_ENV = f"{SRC_ENV}_CWD"  # the folder it was started from (bench.harness.reexec_frozen sets it)
from bench.harness import (  # noqa: E402
    Tsig,
    generate_zone,
    loadavg,
    machine_busy_seconds,
    machine_info,
    proc_start_time,
    reexec_frozen,
    run,
    soa_serial,
    step,
    versions,
)

# The CLI, as .venv/bin/ods-duo runs it, but from the frozen copy (PYTHONPATH; the work folder is the cwd).
ODS_DUO = [sys.executable, "-m", "duo_ods"]


if __name__ == "__main__":
    reexec_frozen(Path(__file__), SRC_ENV, "sign-bench-")

from bench.plain_ods import PlainOds, rendered_threads, wait_gone  # noqa: E402
from duo_ods.config.load import load_config  # noqa: E402
from duo_ods.config.resolve import Duo as ResolvedDuo  # noqa: E402
from duo_ods.node import daemons  # noqa: E402
from duo_ods.ods.client import Enforcer  # noqa: E402

log = logging.getLogger("sign_bench")

CLK_TCK = os.sysconf("SC_CLK_TCK")
# (worker_threads, signer_threads): the default first, and again last to show the drift of a shared machine
DEFAULT_SETTINGS = "2,2 1,1 1,2 2,4 4,4 2,2"
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each thread of a process, in seconds, by thread id."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def stop_recorded_process(path: Path, timeout: float = 20.0) -> None:
    """Stop the process a JSON record ({"pid", "start_time"}, as ods-duo writes them) names, if it runs.

    The start time (field 22 of /proc/PID/stat) must match, so a recycled pid is never touched.
    """
    try:
        record = json.loads(path.read_text())
        pid, start = int(record["pid"]), int(record["start_time"])
    except (ValueError, KeyError, TypeError, OSError):
        return
    if proc_start_time(pid) != start:
        return
    log.warning("stopping %s (pid %d) by its record %s", record.get("name", "?"), pid, path)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc_start_time(pid) == start and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc_start_time(pid) == start:
            os.kill(pid, signal.SIGKILL)


def parse_settings(text: str) -> list[tuple[int, int]]:
    settings = []
    for item in text.split():
        worker, signer = item.split(",")
        settings.append((int(worker), int(signer)))
    return settings


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
    from_trigger_end_s: float | None = None  # served_at minus the end of the trigger command
    signer_cpu_s: float | None = None
    # CPU seconds of each signer thread that worked (> 0.1 s), busiest first: how the work was split
    thread_cpu_s: list[float] = field(default_factory=list)
    peak_cores: float | None = None  # the signer's highest CPU use over any 1 s while it signed
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
    def cores(self) -> float | None:
        """The signer's mean CPU use while it signed (CPU s / wall s): how many cores it got."""
        wall = self.wall_s
        return self.signer_cpu_s / wall if wall and self.signer_cpu_s else None

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
            cores=self.cores,
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
    tsig: Tsig | None = None  # when the signer answers only TSIG-signed queries
    log_offset: int = 0
    cpu_start: float = 0.0
    threads_start: dict[int, float] = field(default_factory=dict)
    cpu_samples: deque[tuple[float, float]] = field(default_factory=deque)  # (monotonic, CPU s)


def axfr_count(address: str, port: int, zone: str, tsig_key_file: Path | None = None) -> AxfrCount:
    """Count the records of an AXFR by type (dig: dnspython needs about 20 s for the 400k records).

    tsig_key_file: a BIND key statement, for signers that only transfer with TSIG.
    """
    started = time.monotonic()
    argv = ["dig", f"@{address}", "-p", str(port), zone, "AXFR", "+noall", "+answer", "+time=60", "+tries=1"]
    if tsig_key_file is not None:
        argv += ["-k", str(tsig_key_file)]
    out = run(argv, timeout=300).stdout
    counts: Counter[str] = Counter()
    serial = 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5 or line.startswith(";"):
            if "failed" in line.lower():
                raise RuntimeError(f"{' '.join(argv)}: {line}")
            continue
        counts[fields[3]] += 1
        if fields[3] == "SOA" and not serial:
            serial = int(fields[6])
    counts["SOA"] -= 1  # AXFR sends the SOA first and last
    return AxfrCount(
        serial=serial,
        records=sum(counts.values()),
        rrsig=counts["RRSIG"],
        nsec3=counts["NSEC3"],
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
    busy_at_first_signconf: float | None = None  # machine busy CPU s when the first signer started
    other_busy_s: float = 0.0  # from the first signconf to the last node serving: CPU s not the signers'

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
    def other_cores(self) -> float | None:
        """How many cores other work (not the watched signers) used, on average, during the span."""
        span = self.span_s
        return self.other_busy_s / span if span and self.busy_at_first_signconf is not None else None

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
            "other_cores": self.other_cores,
            "load_before": self.load_before,
            "load_after": self.load_after,
        }


def _sample_cpu(w: Watched, interval: float = 1.0) -> None:
    """Keep the signer's CPU time over the last second; note its highest use (in cores)."""
    now, cpu = time.monotonic(), cpu_seconds(w.signer_pid)
    samples = w.cpu_samples
    samples.append((now, cpu))
    while len(samples) > 1 and samples[1][0] <= now - interval:
        samples.popleft()
    first_t, first_cpu = samples[0]
    if now - first_t >= interval:
        cores = (cpu - first_cpu) / (now - first_t)
        w.result.peak_cores = max(w.result.peak_cores or 0.0, cores)


def _poll_once(watched: list[Watched], zone: str, label: str) -> None:
    for w in watched:
        r = w.result
        if r.signconf_at is None and w.signconf.exists():
            r.signconf_at = w.signconf.stat().st_mtime_ns / 1e9
        if r.served_at is None and r.signconf_at is not None:
            _sample_cpu(w)
        if r.served_at is None:
            serial = soa_serial(w.address, w.port, zone, w.tsig)
            if serial is not None:
                r.served_at = time.time()
                r.served_serial = serial
                r.signer_cpu_s = cpu_seconds(w.signer_pid) - w.cpu_start
                now = thread_cpu_seconds(w.signer_pid)
                spent = [now[t] - w.threads_start.get(t, 0.0) for t in now]
                r.thread_cpu_s = sorted((round(x, 2) for x in spent if x > 0.1), reverse=True)
                log.info("%s: node %s serves %s serial %d", label, w.name, zone, serial)


def _wait_served(window: Window, watched: list[Watched], trigger: Sequence[str], timeout: float) -> None:
    """Run the trigger and poll (signconf, SOA) until it has ended and every node serves the zone."""
    log.info("%s: %s", window.label, " ".join(trigger))
    window.trigger_started = time.time()
    proc = subprocess.Popen(list(trigger), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not (window.trigger_ended and all(w.result.served_at is not None for w in watched)):
            if proc.poll() is not None and not window.trigger_ended:
                window.trigger_ended = time.time()
                if proc.returncode != 0:
                    output = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"{' '.join(trigger)} exited {proc.returncode}: {output}")
            _poll_once(watched, window.zone, window.label)
            if window.busy_at_first_signconf is None and any(w.result.signconf_at for w in watched):
                window.busy_at_first_signconf = machine_busy_seconds()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{window.label}: not every node served {window.zone} within {timeout:.0f} s"
                )
            time.sleep(POLL_INTERVAL)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


def measure(label: str, zone: str, watched: list[Watched], trigger: Sequence[str], timeout: float) -> Window:
    """Start `trigger` (the command after which the signers sign), poll until every node serves."""
    window = Window(label=label, zone=zone, nodes=[w.result for w in watched])
    for w in watched:
        w.log_offset = w.log_file.stat().st_size
        w.cpu_start = cpu_seconds(w.signer_pid)
        w.threads_start = thread_cpu_seconds(w.signer_pid)
        if w.signconf.exists():
            raise RuntimeError(f"{w.signconf} exists before the measurement")
    window.load_before = loadavg()
    busy_start = machine_busy_seconds()
    _wait_served(window, watched, trigger, timeout)
    busy_end = machine_busy_seconds()
    window.machine_busy_s = busy_end - busy_start
    window.load_after = loadavg()
    # The signers' CPU is counted from the trigger, but they idle until their signconf comes.
    signers = sum(n.signer_cpu_s or 0 for n in window.nodes)
    window.other_busy_s = busy_end - (window.busy_at_first_signconf or busy_start) - signers
    for w in watched:
        w.result.from_trigger_end_s = (w.result.served_at or 0) - window.trigger_ended
        for _ in range(50):  # the STATS line is written around the time the zone goes out
            w.result.stats = read_stats(w.log_file, w.log_offset, zone)
            if w.result.stats is not None:
                break
            time.sleep(0.1)
    # Only now, with every signer done, transfer (the transfers cost CPU).
    for w in watched:
        r = w.result
        try:
            r.axfr = axfr_count(w.address, w.port, zone, w.tsig.file if w.tsig else None)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log.warning(
                "%s: node %s: AXFR failed, counting the signer's STATS instead: %s", label, w.name, exc
            )
            continue
        log.info(
            "%s: node %s wall %.2f s, %s signatures (STATS new=%s), %.0f sig/s, cpu %.2f s, AXFR %.1f s",
            label,
            w.name,
            r.wall_s or -1,
            r.signatures,
            r.stats.rrsig_new if r.stats else "?",
            r.rate or 0,
            r.signer_cpu_s or 0,
            r.axfr.seconds,
        )
        if r.served_serial != r.axfr.serial:
            log.warning(
                "%s: node %s served serial %s, AXFR has %s", label, w.name, r.served_serial, r.axfr.serial
            )
    return window


# --------------------------------------------------------------------------- raw OpenSSL


@dataclass
class OpenSSLSpeed:
    when: str
    processes: int
    sign_per_s: float
    verify_per_s: float


def openssl_speed(seconds: int, processes: int, when: str) -> OpenSSLSpeed:
    argv = ["openssl", "speed", "-seconds", str(seconds)]
    if processes > 1:
        argv += ["-multi", str(processes)]
    argv.append("ecdsap256")
    log.info("raw: %s", " ".join(argv))
    out = run(argv, timeout=seconds * 4 + 60).stdout
    for line in out.splitlines():
        if "ecdsa (nistp256)" in line:
            numbers = line.split()
            return OpenSSLSpeed(when, processes, float(numbers[-2]), float(numbers[-1]))
    raise RuntimeError(f"no ecdsa (nistp256) line in openssl speed output:\n{out}")


# --------------------------------------------------------------------------- the duo (the lab)


def _tsig(duo: ResolvedDuo) -> Tsig | None:
    """The duo's transfer TSIG key, when this version of ods-duo has one."""
    path = getattr(duo, "tsig_key_path", None)
    return Tsig.read(path) if isinstance(path, Path) and path.exists() else None


class Duo:
    """The lab duo, driven through the ods-duo command line only."""

    def __init__(self, lab_dir: Path, base_address: str) -> None:
        self.dir = lab_dir
        self.base_address = base_address
        self.config = lab_dir / "duo.toml"
        self.nodes = ("a", "b")

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        return run([*ODS_DUO, "--config", str(self.config), *args], timeout=timeout).stdout

    def up(self) -> None:
        log.info("duo: lab up in %s", self.dir)
        run([*ODS_DUO, "lab", "up", "--dir", str(self.dir), "--base-address", self.base_address])

    def down(self) -> None:
        if self.config.exists():
            log.info("duo: lab down")
            done = run([*ODS_DUO, "lab", "down", "--dir", str(self.dir)], check=False)
            log.info("duo: %s", " ".join((done.stdout + done.stderr).split()))
        # Whatever lab down could not stop (a broken ods-duo, say), stop here by the recorded pids.
        for record in sorted(self.dir.glob("**/*.json")):
            stop_recorded_process(record)

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
        assert all(
            n["worker_threads"] == worker and n["signer_threads"] == signer for n in raw["nodes"].values()
        )
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
                    name=name,
                    address=node.address,
                    port=node.port,
                    signconf=node.paths.signconf(zone),
                    log_file=node.paths.log / "signerd.log",
                    signer_pid=record.pid,
                    result=NodeResult(node=name, zone=zone, threads=threads),
                    tsig=_tsig(duo),
                )
            )
        trigger = [*ODS_DUO, "--config", str(self.config), "key", "create", zone]
        try:
            return measure(f"duo {threads}", zone, watched, trigger, timeout)
        finally:
            self.cli("zone", "remove", zone)


# --------------------------------------------------------------------------- one plain ODS instance


class Single(PlainOds):
    """One plain OpenDNSSEC (bench/plain_ods.py), measured signing one zone like the duo."""

    def sign(self, zone: str, zone_file: Path, threads: tuple[int, int], timeout: float) -> Window:
        p = self.node.paths
        unsigned = p.unsigned_zone(zone)
        shutil.copyfile(zone_file, unsigned)
        record = daemons.running(self.node, "signerd")
        if record is None:
            raise RuntimeError("single: signer not running")
        watched = [
            Watched(
                name="single",
                address=self.address,
                port=self.port,
                signconf=p.signconf(zone),
                log_file=p.log / "signerd.log",
                signer_pid=record.pid,
                result=NodeResult(node="single", zone=zone, threads=threads),
            )
        ]
        trigger = [
            "ods-enforcer",
            "-s",
            str(p.enforcer_sock),
            "zone",
            "add",
            "--zone",
            zone,
            "--policy",
            self.policy.name,
            "--signerconf",
            str(p.signconf(zone)),
            "--in-type",
            "File",
            "--input",
            str(unsigned),
            "--out-type",
            "DNS",
            "--output",
            str(p.addns_xml),
        ]
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
    source: dict[str, Any]
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
                text = re.sub(r"^\[[^]]*\] |\(pid: \d+\)|ods-\w+\[\d\]", "", line).strip()
                text = re.sub(r"bench-[ds]\d+\.test", "bench-*.test", text)
                if "[axfr] unable to open file" in text:
                    text += " (the benchmark's SOA polls before the zone is out)"
                counts[text] += 1
        if counts:
            found[str(path.relative_to(workdir))] = [f"{n} x {text}" for text, n in counts.most_common(12)]
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sign.md")
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help=f"(worker_threads,signer_threads) to measure, in order (default {DEFAULT_SETTINGS!r})",
    )
    parser.add_argument("--no-single", action="store_true", help="measure the duo only")
    parser.add_argument("--base-address", default="127.0.0.90", help="the lab's base: nodes on +1 and +2")
    parser.add_argument("--single-address", default="127.0.0.95")
    parser.add_argument("--openssl-seconds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180.0, help="per measurement")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, tokens) afterwards")
    parser.add_argument(
        "--source",
        default="worktree",
        help="the ods-duo code to run: a frozen copy of the working tree (default) or a git revision",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.out = Path(os.environ.get(CWD_ENV, ".")) / args.out  # the caller's folder, not the work folder
    if os.geteuid() != 0:
        parser.error("run as root (ODS, SoftHSM, mount namespaces)")
    return args


def run_all(args: argparse.Namespace, results: Results, duo: Duo, single: Single | None, zones: Path) -> None:
    """OpenSSL first (quiet machine), then per setting: the duo, then the single instance right after."""
    serial = int(time.strftime("%Y%m%d")) * 100

    def zone_file(zone: str) -> Path:
        path = zones / zone
        path.write_text(generate_zone(zone, args.records, serial))
        return path

    with step("raw OpenSSL ECDSA P-256 (before)"):
        results.openssl.append(openssl_speed(args.openssl_seconds, 1, "before"))
        results.openssl.append(openssl_speed(args.openssl_seconds, os.cpu_count() or 1, "before"))
    with step("lab up"):
        duo.up()
    for i, threads in enumerate(parse_settings(args.settings), 1):
        with step(f"setting {i}: worker_threads={threads[0]} signer_threads={threads[1]}"):
            duo.set_threads(*threads)
            zone = f"bench-d{i}.test"
            results.duo.append(duo.sign(zone, zone_file(zone), threads, args.timeout))
            if single is not None:
                single.restart(*threads)
                zone = f"bench-s{i}.test"
                results.single.append(single.sign(zone, zone_file(zone), threads, args.timeout))
                single.stop()  # idle, but out of the way of the next duo measurement
    duo.down()
    with step("raw OpenSSL ECDSA P-256 (after)"):
        results.openssl.append(openssl_speed(args.openssl_seconds, 1, "after"))
        results.openssl.append(openssl_speed(args.openssl_seconds, os.cpu_count() or 1, "after"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="sign-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "zones").mkdir(exist_ok=True)
    log.info("work folder %s", workdir)
    results = Results(
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        records=args.records,
        machine=machine_info(),
        versions=versions(
            ("opendnssec-signer", "opendnssec-enforcer-sqlite3", "softhsm2", "openssl", "libssl3")
        ),
        source=json.loads((workdir / "source.json").read_text())
        if (workdir / "source.json").exists()
        else {},
    )
    t0 = time.monotonic()
    duo = Duo(workdir / "lab", args.base_address)
    single = None
    if not args.no_single:
        # The duo's own policy (the lab's), so both sign under the same kasp.xml.
        single = Single(workdir / "single", args.single_address, 53, duo.config)
    try:
        run_all(args, results, duo, single, workdir / "zones")
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


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def mean_rate_by_threads(windows: list[Window]) -> dict[tuple[int, int], float]:
    """The mean aggregate sig/s of each thread setting (a setting may be measured more than once)."""
    rates: dict[tuple[int, int], list[float]] = {}
    for w in windows:
        if w.aggregate_rate:
            rates.setdefault(w.nodes[0].threads, []).append(w.aggregate_rate)
    return {threads: sum(r) / len(r) for threads, r in rates.items()}


def _best(windows: list[Window]) -> tuple[tuple[int, int], float] | None:
    means = mean_rate_by_threads(windows)
    return max(means.items(), key=lambda item: item[1]) if means else None


def _node_rows(results: Results) -> list[str]:
    rows = [
        "| # | run | threads (worker, signer) | node | signatures | wall s | from key create end s | sig/s "
        "| signer CPU s | CPU s per busy thread | sig/CPU-s | cores mean / peak 1 s | STATS new "
        "| STATS RR/NSEC3/RRSIG/total s | STATS sig/s | other work, cores | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, windows in (("duo", results.duo), ("single", results.single)):
        for i, w in enumerate(windows, 1):
            for n in w.nodes:
                st = n.stats
                times = f"{st.rr_time}/{st.nsec3_time}/{st.rrsig_time}/{st.total_time}" if st else "-"
                from_end = _f(n.from_trigger_end_s, 2) if kind == "duo" else "-"
                rows.append(
                    f"| {i} | {kind} | {n.threads} | {n.node} | {_f(n.signatures)} | {_f(n.wall_s, 2)} "
                    f"| {from_end} | {_f(n.rate)} | {_f(n.signer_cpu_s, 2)} "
                    f"| {' + '.join(f'{x:.1f}' for x in n.thread_cpu_s) or '-'} | {_f(n.rate_per_cpu_s)} "
                    f"| {_f(n.cores, 2)} / {_f(n.peak_cores, 2)} "
                    f"| {_f(st.rrsig_new if st else None)} | {times} | {_f(n.daemon_rate)} "
                    f"| {_f(w.other_cores, 2)} | {w.load_before:.2f}/{w.load_after:.2f} |"
                )
    return rows


def _comparison_rows(results: Results, raw_one: float | None, raw_all: float | None) -> list[str]:
    rows = [
        "| # | threads | duo a sig/s | duo b sig/s | duo both sig/s | single sig/s | node a / single "
        "| node b / single | duo both / single | single / raw all cores | duo both / raw all cores "
        "| single / raw 1 core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, w in enumerate(results.duo):
        single = results.single[i] if i < len(results.single) else None
        single_rate = single.aggregate_rate if single else None
        a, b = (w.nodes[0].rate, w.nodes[1].rate) if len(w.nodes) > 1 else (w.nodes[0].rate, None)
        both = w.aggregate_rate
        ratios = [_ratio(a, single_rate), _ratio(b, single_rate), _ratio(both, single_rate)]
        rows.append(
            f"| {i + 1} | {w.nodes[0].threads} | {_f(a)} | {_f(b)} | {_f(both)} | {_f(single_rate)} | "
            + " | ".join(_f(r, 2) for r in ratios)
            + f" | {_pct(_ratio(single_rate, raw_all))} | {_pct(_ratio(both, raw_all))} "
            f"| {_pct(_ratio(single_rate, raw_one))} |"
        )
    return rows


def _source_text(source: dict[str, Any]) -> str:
    if not source:
        return "as installed in the venv"
    commit = str(source.get("commit", "?"))[:10]
    if source.get("source") == "worktree":
        changed = source.get("uncommitted_files", 0)
        return f"a frozen copy of the working tree at start (HEAD {commit} + {changed} uncommitted files)"
    return f"git revision {source.get('source')} ({commit})"


def write_results(results: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # The raw limit: the best of the OpenSSL runs (before and after), the least disturbed.
    raw_one = max((o.sign_per_s for o in results.openssl if o.processes == 1), default=None)
    raw_all = max((o.sign_per_s for o in results.openssl if o.processes > 1), default=None)
    best_duo, best_single = _best(results.duo), _best(results.single)
    data: dict[str, Any] = {
        "started": results.started,
        "records": results.records,
        "machine": results.machine,
        "versions": results.versions,
        "source": results.source,
        "openssl": [asdict(o) for o in results.openssl],
        "duo": [w.summary() for w in results.duo],
        "single": [w.summary() for w in results.single],
        "duo_mean_rate_by_threads": {str(k): v for k, v in mean_rate_by_threads(results.duo).items()},
        "single_mean_rate_by_threads": {str(k): v for k, v in mean_rate_by_threads(results.single).items()},
        "best_duo": best_duo,
        "best_single": best_single,
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
        f"ods-duo code: {_source_text(results.source)}.",
        "",
        "The machine is shared and noisy: other work (the lead's tests, other benchmarks) may run during "
        "the measurements. `other work, cores` is the machine's busy CPU time from the first signer's start "
        "to the last node serving, minus the watched signers' own, over that span: how many of the "
        f"{m['nproc']} cores other work took on average. `sig/CPU-s` (signatures per second of signer CPU "
        "time) is the figure least disturbed by it; `cores mean / peak 1 s` is how much CPU each signer got "
        "(mean over its wall time, and its best 1 s).",
    ]
    if results.error:
        lines += ["", f"**The run failed:** `{results.error}`; the tables hold what was measured before."]
    lines += [
        "",
        "## Raw limit: `openssl speed ecdsap256`",
        "",
        "Run before and after the ODS measurements; the raw limit used below is the better of the two.",
        "",
        "| when | processes | sign/s | verify/s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {o.when} | {o.processes} | {_f(o.sign_per_s)} | {_f(o.verify_per_s)} |" for o in results.openssl
    ]
    lines += [
        "",
        "## Per node",
        "",
        "Wall = from the enforcer writing the zone's signconf (its mtime: the signer starts then) until the "
        "node's listener answers SOA for the zone (the signed zone is out); it includes reading the records, "
        "NSEC3, signing and writing out. `from key create end` = the same end, counted from the end of "
        "`ods-duo key create` (the first node's signer starts before that command returns). Signatures = "
        "RRSIGs in an AXFR of the node afterwards. STATS = the signer's own log line (`RRSIG new=N "
        "time=T(sec)`, whole seconds, so its rate is coarse).",
        "",
        *_node_rows(results),
        "",
        "## Duo against single, per thread setting",
        "",
        "Each duo measurement is followed at once by the single instance at the same setting. Duo both = "
        "both nodes' signatures over the span from the first signconf to the last node serving. Raw "
        f"fractions are of `openssl speed -multi {m['nproc']}` ({_f(raw_all)} sign/s: the machine's raw "
        f"limit) and of one core ({_f(raw_one)} sign/s).",
        "",
        *_comparison_rows(results, raw_one, raw_all),
        "",
        "## Best setting (mean sig/s per setting)",
        "",
        "Duo (both nodes): "
        + ", ".join(f"{k}: {_f(v)}" for k, v in mean_rate_by_threads(results.duo).items())
        + f". Best {best_duo[0] if best_duo else '-'}.",
        "",
        "Single: "
        + ", ".join(f"{k}: {_f(v)}" for k, v in mean_rate_by_threads(results.single).items())
        + f". Best {best_single[0] if best_single else '-'}.",
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
