"""What every benchmark under bench/ shares (issue 14): running commands, the machine and its other
work, a frozen copy of the source, generated zones, results files.

The benchmarks run for minutes on a machine shared with other people's tests and benchmarks,
while the repository is edited; so each one freezes the ods-duo code it measures (`Frozen`),
says what the machine is and how busy it was during each phase (`machine_info`, `LoadMeter`,
`other_work`), and writes its results next to the earlier runs (`prepend_section`) or as a
report plus its raw numbers (`write_report`).

Imported by the benchmarks as `bench.harness` (they put the repository folder on sys.path first).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.version

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PACKAGES = ("opendnssec-signer", "opendnssec-enforcer-sqlite3", "softhsm2", "bind9", "bind9-dnsutils")

log = logging.getLogger("bench")


# --------------------------------------------------------------------------- commands


def run(
    argv: Sequence[str], *, timeout: float = 600.0, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """A subprocess from an argument list (never a shell), output captured as text; with check, a
    non-zero exit raises RuntimeError with the end of its output."""
    log.debug("run %s", " ".join(argv))
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return done


@contextmanager
def step(name: str, logger: logging.Logger = log) -> Iterator[None]:
    """Log a phase's start and its duration."""
    started = time.monotonic()
    logger.info("== %s", name)
    try:
        yield
    finally:
        logger.info("== %s: %.1f s", name, time.monotonic() - started)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )


def require_root(parser: Any) -> None:
    if os.geteuid() != 0:
        parser.error("run as root (ODS, SoftHSM, mount namespaces, loopback addresses, port 53)")


# --------------------------------------------------------------------------- the machine


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores) since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (None: gone or a zombie): with the pid, names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (VmRSS), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class LoadMeter:
    """How busy the machine was over a phase: started at creation, read with result()."""

    busy: float = field(default_factory=machine_busy_seconds)
    wall: float = field(default_factory=time.monotonic)

    def result(self) -> dict[str, float]:
        """busy_cores: the machine's average busy cores (2.0 = both of 2 busy); loadavg_end: the
        1-minute load average at the end."""
        wall = time.monotonic() - self.wall
        cores = (machine_busy_seconds() - self.busy) / wall if wall > 0 else 0.0
        return {"busy_cores": round(cores, 2), "loadavg_end": loadavg(), "seconds": round(wall, 1)}


def phase_load(start_busy: float, start_wall: float) -> dict[str, float]:
    """LoadMeter's result for a phase whose start was noted by hand."""
    return LoadMeter(start_busy, start_wall).result()


OTHER_LABELS = ("ods-signerd", "ods-enforcerd", "named", "pytest", "_bench.py", "sshd")


def other_work(mine: Sequence[str] = ()) -> dict[str, int]:
    """Other people's work running now: ODS daemons, named, pytest, benchmarks (processes whose
    command line names none of `mine`, e.g. this run's work folder)."""
    counts: Counter[str] = Counter()
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            text = b" ".join((proc / "cmdline").read_bytes().split(b"\0")).decode(errors="replace")
        except OSError:
            continue
        if not text or any(m in text for m in mine):
            continue
        for label in OTHER_LABELS:
            if label in text:
                counts[label] += 1
    return dict(counts)


# What a process is, for cpu_seconds: the first label its command line contains.
CPU_LABELS = (
    ("ods-signerd", "ods-signerd"), ("ods-enforcerd", "ods-enforcerd"), ("named", "named"),
    ("node serve", "ods-duo agents"), (" watch", "ods-duo watchers"),
    (" metrics --listen", "ods-duo metrics exporter"), ("duo_ods", "ods-duo other"),
    ("ods-duo", "ods-duo other"), ("bench/", "the benchmark itself"),
)  # fmt: skip


def cpu_seconds(within: str) -> dict[int, tuple[str, float]]:
    """pid -> (label, CPU seconds so far) of every process whose command line names `within` (a
    run's work folder), labelled by CPU_LABELS; diff two of these with cpu_used. A process's time
    includes its children that ended and were reaped (an agent's `ods-enforcer` commands and
    named-checkconf runs, a relay's reloads are the relay's own)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = b" ".join((proc / "cmdline").read_bytes().split(b"\0")).decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if within not in text:
            continue
        label = next((name for needle, name in CPU_LABELS if needle in text), "other")
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        found[int(proc.name)] = (label, (utime + stime + cutime + cstime) / tick)
    return found


def cpu_used(
    before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per label between two cpu_seconds readings (processes that ended between them
    are not counted: their time is gone from /proc)."""
    used: Counter[str] = Counter()
    for pid, (label, seconds) in after.items():
        used[label] += seconds - (before[pid][1] if pid in before else 0.0)
    return {label: round(seconds, 1) for label, seconds in used.most_common()}


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def machine_line(info: Mapping[str, Any]) -> str:
    """One sentence for a results file."""
    load = info.get("loadavg_start") or ["?"]
    return (
        f"Machine: {info.get('hostname')}, {info.get('nproc')} cores ({info.get('cpu_model')}), "
        f"{info.get('memory_gb')} GB, kernel {info.get('kernel')}; load average {' / '.join(load)} "
        "(1/5/15 min) at the start"
    )


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *packages], check=False).stdout
    found = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    found["python"] = platform.python_version()
    found["dnspython"] = dns.version.version
    return found


# --------------------------------------------------------------------------- frozen source


def freeze_source(source: str, dest: Path) -> dict[str, Any]:
    """Copy duo_ods and its templates to dest/duo_ods: the code the whole run uses.

    The repository is edited by others while a benchmark runs (minutes); a frozen copy keeps one
    run on one version of ods-duo. source: "worktree" (the files as they are now) or a git revision.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    if source == "worktree":
        shutil.copytree(REPO / "duo_ods", dest / "duo_ods", ignore=skip)
        shutil.copytree(REPO / "templates", dest / "duo_ods" / "templates", ignore=skip)
    else:
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", source, "duo_ods", "templates"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
        (dest / "templates").rename(dest / "duo_ods" / "templates")

    def git(*args: str) -> str:
        return run(["git", "-C", str(REPO), *args], check=False).stdout.strip()

    changed = git("status", "--porcelain", "--", "duo_ods", "templates").splitlines()
    return {
        "source": source,
        "commit": git("rev-parse", source if source != "worktree" else "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") if source == "worktree" else source,
        "uncommitted_files": len(changed) if source == "worktree" else 0,
        "frozen_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def source_text(info: Mapping[str, Any]) -> str:
    """The frozen code, for a results file."""
    commit = str(info.get("commit", "?"))[:10]
    if info.get("source", "worktree") != "worktree":
        return f"ods-duo code: revision {info.get('source')} ({commit}), frozen at the start"
    dirty = info.get("uncommitted_files", 0)
    return (
        f"ods-duo code: a frozen copy of the working tree at the start (branch {info.get('branch', '?')}, "
        f"HEAD {commit}" + (f" + {dirty} uncommitted files under duo_ods/ and templates/)" if dirty else ")")
    )


@dataclass
class Frozen:
    """A frozen copy of ods-duo in `workdir/src` and how to run it: `python -m duo_ods` with that
    folder on PYTHONPATH, from `workdir` (python -m puts the current folder first on sys.path, so
    never from a folder holding another duo_ods/)."""

    workdir: Path
    info: dict[str, Any]

    @property
    def src(self) -> Path:
        return self.workdir / "src"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(self.src))

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "duo_ods"]

    def cli(self, *args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.argv, *args], timeout=timeout, check=check, env=self.env, cwd=self.workdir)

    def wrapper(self) -> Path:
        """An executable `ods-duo` in the work folder that runs the frozen copy (for sshd's forced
        command, which must name a program called ods-duo)."""
        path = self.workdir / "bin" / "ods-duo"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            "#!/bin/sh\n"
            f"cd {self.workdir} || exit 1\n"
            f'PYTHONPATH={self.src} exec {sys.executable} -m duo_ods "$@"\n'
        )
        path.chmod(0o755)
        return path


def freeze(workdir: Path, source: str = "worktree") -> Frozen:
    workdir.mkdir(parents=True, exist_ok=True)
    info = freeze_source(source, workdir / "src")
    (workdir / "source.json").write_text(json.dumps(info) + "\n")
    return Frozen(workdir, info)


def reexec_frozen(script: Path, src_env: str, prefix: str) -> None:
    """For benchmarks that import duo_ods themselves: freeze the source into the work folder, then
    run the script again on it (PYTHONPATH, cwd the work folder). In the re-executed run (src_env
    set) only put the frozen copy first on sys.path. Reads --workdir and --source from argv."""
    if os.environ.get(src_env):
        sys.path.insert(0, os.environ[src_env])
        return
    workdir_arg = _argv_value("--workdir")
    if "-h" in sys.argv or "--help" in sys.argv:
        return  # main() prints the help
    workdir = (Path(workdir_arg) if workdir_arg else Path(_mkdtemp(prefix))).resolve()
    frozen = freeze(workdir, _argv_value("--source") or "worktree")
    argv = sys.argv[1:] if workdir_arg else [*sys.argv[1:], "--workdir", str(workdir)]
    env = dict(frozen.env, **{src_env: str(frozen.src), f"{src_env}_CWD": os.getcwd()})
    os.chdir(workdir)
    os.execve(sys.executable, [sys.executable, str(script.resolve()), *argv], env)  # noqa: S606


def _argv_value(option: str) -> str | None:
    for i, word in enumerate(sys.argv):
        if word == option and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def _mkdtemp(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


# --------------------------------------------------------------------------- zones


def today_serial() -> int:
    return int(time.strftime("%Y%m%d")) * 100


def generate_zone(
    zone: str,
    records: int,
    serial: int,
    *,
    ttl: int = 3600,
    width: int = 6,
    www: str | None = None,
    txt: str = "bench record",
    delegations: bool = False,
) -> str:
    """A deterministic unsigned zone of `records` records, one RRset per owner name.

    Apex: SOA, 2 NS (and MX with delegations); ns1/ns2 A (and www A if given); then names h0...
    (`width` digits) cycling A, AAAA, TXT, MX. With delegations every 1000th name is a delegation
    instead (NS, plus DS on every other one and a glue A on every other one).
    """
    lines = [
        f"$ORIGIN {zone}.",
        f"$TTL {ttl}",
        f"@ IN SOA ns1 hostmaster {serial} 3600 600 864000 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        *(["@ IN MX 10 ns1"] if delegations else []),
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 198.51.100.53",
        *([f"www IN A {www}"] if www is not None else []),
    ]
    count = len(lines) - 2  # records so far ($ORIGIN and $TTL are not records)
    i = 0
    while count < records:
        name = f"h{i:0{width}d}"
        if delegations and i % 1000 == 999 and records - count >= 3:
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
                lines.append(f'{name} IN TXT "{txt} {i}"')
            else:
                lines.append(f"{name} IN MX 10 ns1")
            count += 1
        i += 1
    return "\n".join(lines) + "\n"


def small_zone(zone: str, serial: int) -> str:
    """An onboarding zone: SOA, 2 NS, 4 A."""
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n"
        f"@ IN SOA ns1 hostmaster {serial} 3600 600 864000 300\n"
        "@ IN NS ns1\n@ IN NS ns2\n"
        "ns1 IN A 192.0.2.53\nns2 IN A 198.51.100.53\n"
        "www IN A 192.0.2.80\nmail IN A 192.0.2.25\n"
    )


def write_atomic(path: Path, text: str) -> float:
    """Write a hidden temp file in the same folder, then os.replace it into place (a watcher only
    ever sees the whole file). Returns the wall-clock time just before the rename."""
    tmp = path.with_name(f".{path.name}.bench-tmp")
    tmp.write_text(text)
    started = time.time()
    os.replace(tmp, path)
    return started


# --------------------------------------------------------------------------- numbers and results


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n*q), at least 1
    return ordered[int(rank) - 1]


def prepend_section(out: Path, header: str, section: str) -> None:
    """Put a run's section on top of the results file, below its header; earlier runs (and notes
    written above them) stay. header: the file's text when it does not exist yet."""
    old = out.read_text() if out.exists() else header
    match = re.search(r"^## ", old, flags=re.MULTILINE)
    head, rest = (old[: match.start()], old[match.start() :]) if match else (old.rstrip() + "\n\n", "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + section.rstrip() + "\n" + ("\n" + rest if rest else ""))


def write_report(out: Path, markdown: str, data: Any) -> Path:
    """The report and, next to it, its raw numbers (same name, .json). Returns the .json path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".json")
    raw.write_text(json.dumps(data, indent=2, default=str) + "\n")
    out.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return raw


# --------------------------------------------------------------------------- DNS (dnspython only)

_KEY_STATEMENT = re.compile(
    r'key\s+"(?P<name>[^"]+)"\s*\{\s*algorithm\s+(?P<alg>[\w-]+)\s*;\s*secret\s+"(?P<secret>[^"]+)"\s*;'
)


@dataclass(frozen=True)
class Tsig:
    """A TSIG key from a BIND key statement file (the file goes to dig as -k; never argv). The
    benchmarks read it themselves rather than through duo_ods, so they do not follow its modules."""

    file: Path
    name: str
    algorithm: str
    secret: str

    @classmethod
    def read(cls, path: Path) -> Tsig:
        match = _KEY_STATEMENT.search(path.read_text())
        if match is None:
            raise RuntimeError(f"{path}: no BIND key statement")
        return cls(path, match["name"], match["alg"], match["secret"])

    def keyring(self) -> Any:
        return dns.tsigkeyring.from_text({self.name: (self.algorithm, self.secret)})


def soa_serial(
    address: str, port: int, zone: str, tsig: Tsig | None = None, timeout: float = 0.3
) -> int | None:
    """The SOA serial the listener serves for the zone, or None while it serves none (or no answer)."""
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    if tsig is not None:
        query.use_tsig(tsig.keyring(), keyname=tsig.name, algorithm=tsig.algorithm)
    try:
        reply = dns.query.udp(query, address, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        # Timeouts, and the signer's unsigned NOTAUTH to a TSIG query while it has no such zone
        # (dnspython: "response requires a TSIG but does not have one").
        return None
    if reply.rcode() != dns.rcode.NOERROR:
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None
