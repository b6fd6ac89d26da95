"""The freshness sampler and its helpers (issue 13), shared by tests/integration/test_freshness.py,
tests/integration/test_random_ops.py and bench/random_ops.py.

The sampler thread AXFRs every signer and secondary of a lab every half second and records the SOA
serial and a digest of the content (the zone without RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY and
SOA). It checks two rules at every sample: no serial is ever seen with two different contents, and
no secondary ever goes back to older content (the versions, oldest first, are announced with
`expect` before any server can serve them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.query
import dns.rdatatype
import dns.zone

from duo_ods.config.load import load_config
from duo_ods.dns.tsig import TsigKey
from duo_ods.node import daemons
from tests.integration.conftest import Lab, run_duo
from tests.support.disk import remove_tree

ZONE = "example.test"
CATCH_UP = 30.0  # seconds: after a node returns, every signer and secondary serves the newest data
SIGNER_MADE = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "SOA"}


def now() -> str:
    """The wall clock (UTC) for logs: what the daemons' logs can be matched against."""
    return time.strftime("%H:%M:%S", time.gmtime())


# --- what a server serves -----------------------------------------------------------------


def fetch(address: str, port: int, key: TsigKey, timeout: float = 3.0) -> dns.zone.Zone | None:
    try:
        messages = dns.query.xfr(
            address, dns.name.from_text(ZONE), port=port, lifetime=timeout, relativize=False,
            keyring=key.keyring(), keyname=key.name,
        )  # fmt: skip
        return dns.zone.from_xfr(messages, relativize=False)
    except (dns.exception.DNSException, OSError, EOFError):
        return None


def content(z: dns.zone.Zone) -> tuple[int, str]:
    """(SOA serial, digest of the content without what each signer makes)."""
    lines = sorted(
        f"{name} {ttl} {dns.rdatatype.to_text(rd.rdtype)} {rd.to_text()}"
        for name, ttl, rd in z.iterate_rdatas()
        if dns.rdatatype.to_text(rd.rdtype) not in SIGNER_MADE
    )
    soa = z.get_rdataset(dns.name.from_text(ZONE), dns.rdatatype.SOA)
    assert soa is not None
    return int(soa[0].serial), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def has_record(z: dns.zone.Zone, owner: str) -> bool:
    return z.get_node(dns.name.from_text(f"{owner}.{ZONE}")) is not None


def servers(lab: Lab) -> dict[str, tuple[str, int]]:
    found = {f"signer {n['name']}": (n["address"], n["port"]) for n in lab.status["nodes"]}
    found |= {f"secondary {s['name']}": (s["address"], s["port"]) for s in lab.status["secondaries"]}
    return found


# --- the sampler --------------------------------------------------------------------------


@dataclass
class Sampler:
    """Every `every` seconds: serial and content digest at every signer and secondary."""

    lab: Lab
    every: float = 0.5
    versions: list[str] = field(default_factory=list)  # content digests, oldest first
    samples: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="freshness-sampler", daemon=True)
        thread.start()
        return thread

    def expect(self, text: str) -> None:
        """The next content version (checked by the signers' own rules: a content digest)."""
        with self.lock:
            self.versions.append(text)

    def run(self) -> None:
        key = self.lab.tsig
        seen_serials: dict[int, tuple[str, str]] = {}
        highest: dict[str, int] = {}
        while not self.stop.wait(self.every):
            for where, (address, port) in servers(self.lab).items():
                z = fetch(address, port, key)
                if z is None:
                    continue
                serial, digest = content(z)
                with self.lock:
                    self.samples.setdefault(where, []).append((time.time(), serial, digest))
                    # Rule 1: one serial, one content, wherever it is served.
                    if serial in seen_serials and seen_serials[serial][0] != digest:
                        self.problems.append(
                            f"{now()} serial {serial}: {where} serves content "
                            f"{self.version_name(digest)}, {seen_serials[serial][1]} served "
                            f"{self.version_name(seen_serials[serial][0])} at that serial"
                        )
                    seen_serials.setdefault(serial, (digest, where))
                    if not where.startswith("secondary") or digest not in self.versions:
                        continue
                    # Rule 2: a secondary never goes back to older content.
                    version = self.versions.index(digest)
                    if version < highest.get(where, -1):
                        self.problems.append(
                            f"{now()} {where} went back from content version "
                            f"{highest[where]} to {version} (serial {serial})"
                        )
                    highest[where] = max(version, highest.get(where, -1))

    def version_name(self, digest: str) -> str:
        """'version N' (announced with `expect`, 0 the first) or the digest's start."""
        return f"version {self.versions.index(digest)}" if digest in self.versions else digest[:12]

    def latest(self, where: str) -> tuple[int, str] | None:
        with self.lock:
            entries = self.samples.get(where)
            return (entries[-1][1], entries[-1][2]) if entries else None

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {w: len(s) for w, s in self.samples.items()}


# --- versions of the zone, and waiting for them -------------------------------------------


def version_digest(lab: Lab, text: str) -> str:
    """The content digest of an input text, as the sampler computes it from a served copy."""
    z = dns.zone.from_text(text, origin=dns.name.from_text(ZONE), relativize=False)
    return content(z)[1]


class Versions:
    """Input files for successive versions of the zone, each with one new record."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.base = (lab.dir / "input" / ZONE).read_text()
        self.count = 0

    def next(self, owner: str) -> Path:
        self.count += 1
        # The input's own serial stays: the signers pick theirs (the duo levels them).
        self.base += f"{owner} IN A 192.0.2.{100 + self.count % 150}\n"
        path = self.lab.dir / f"{ZONE}.v{self.count}"  # outside the watched input directory
        path.write_text(self.base)
        return path


def wait_newest(lab: Lab, sampler: Sampler, owner: str, timeout: float = CATCH_UP) -> dict[str, int]:
    """Until every signer and secondary serves the newest version (with `owner`): their serials."""
    want = sampler.versions[-1]
    deadline = time.monotonic() + timeout
    while True:
        latest = {w: sampler.latest(w) for w in servers(lab)}
        if all(v is not None and v[1] == want for v in latest.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"not every server serves the newest data after {timeout} s: {latest}")
        time.sleep(0.3)
    for node in ("a", "b"):  # the record itself, in each signer's signed copy
        assert has_record(lab.signed(node, ZONE), owner)
    for sec in lab.status["secondaries"]:  # ...and in each secondary's copy
        served = fetch(sec["address"], sec["port"], lab.tsig)
        assert served is not None and has_record(served, owner), sec["name"]
    return {w: v[0] for w, v in latest.items() if v is not None}


def update(
    lab: Lab, sampler: Sampler, path: Path, config: str | None = None
) -> tuple[int, dict[str, Any], str]:
    """`zone update` with the file, announced to the sampler first: (exit code, JSON, stderr)."""
    sampler.expect(version_digest(lab, path.read_text()))
    args = ["--config", config or lab.config, "--json", "zone", "update", ZONE, "--file", str(path)]
    proc = run_duo(*args, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def check_report(lab: Lab) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(lab.duo("--json", "check", check=False).stdout)
    return report


def check_ok(lab: Lab) -> None:
    report = check_report(lab)
    assert report["ok"], json.dumps(report, indent=1)


# --- a seeded random sequence of operator and failure steps ---------------------------------


@dataclass
class Step:
    index: int
    kind: str  # stop, start, pause (SIGSTOP ods-signerd), resume (SIGCONT), edit, update, restore
    node: str | None = None
    seconds: float = 0.0
    outcome: str = ""
    at: str = ""  # wall clock (UTC) when the step began

    def text(self) -> str:
        where = f" {self.node}" if self.node else ""
        return f"{self.index:3d} {self.at} {self.kind}{where} ({self.seconds:.1f} s) {self.outcome}".rstrip()


@dataclass
class RandomOps:
    """A seeded sequence of steps on a lab whose sampler runs: node stop/start, SIGSTOP/SIGCONT of a
    node's ods-signerd, an edit of the zone file in the watched input directory, `zone update` of
    that file, and one wipe-and-`backup restore` of a node. Each edit or update adds a uniquely
    named A record, announced to the sampler before any server can serve it.

    The steps are drawn from the model's state only (never from what the daemons did), so a seed
    always gives the same step list. Invariants kept: at most one node down or paused at a time
    (never both signers away), a paused signer is resumed within two steps and only edits happen
    meanwhile (a command that needs the hung signer waits for its 120 s timeout), and `settle`
    brings every node back up and resumed."""

    lab: Lab
    sampler: Sampler
    seed: int
    steps: int = 30
    restore: bool = True
    log: Callable[[str], None] = print
    done: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    newest_owner: str = ""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.state = {"a": "up", "b": "up"}  # up, down, paused
        self.away_for = 0  # steps the node that is down or paused has been away
        self.paused_pids: set[int] = set()
        self.versions = Versions(self.lab)
        self.restore_at = self.rng.randint(self.steps // 4, 3 * self.steps // 4) if self.restore else -1
        self.restored = False
        self.choose_text = ""  # the step being done (for a report when it fails)
        self.duo = load_config(Path(self.lab.config))

    # --- choosing ---------------------------------------------------------------------------

    def choose(self, index: int) -> tuple[str, str | None]:
        away = [n for n, s in self.state.items() if s != "up"]
        if away:
            node = away[0]
            if self.state[node] == "paused":
                if self.away_for >= 2 or self.rng.random() < 0.5:
                    return "resume", node
                return "edit", None
            if self.away_for >= 4:
                return "start", node
            kind = self.rng.choices(["start", "edit", "update"], weights=[3, 3, 2])[0]
            return kind, node if kind == "start" else None
        if self.restore and not self.restored and index >= self.restore_at:
            return "restore", self.rng.choice(["a", "b"])
        kind = self.rng.choices(["stop", "pause", "edit", "update"], weights=[2, 2, 3, 2])[0]
        return kind, self.rng.choice(["a", "b"]) if kind in ("stop", "pause") else None

    # --- doing ------------------------------------------------------------------------------

    def run(self) -> list[Step]:
        self.log(f"random ops: seed {self.seed}, {self.steps} steps, restore at step {self.restore_at}")
        try:
            for index in range(1, self.steps + 1):
                kind, node = self.choose(index)
                self.choose_text = f"{kind} {node or ''}".strip()
                step = Step(index, kind, node, at=now())
                started = time.monotonic()
                step.outcome = self.do(step)
                step.seconds = time.monotonic() - started
                self.done.append(step)
                self.log(step.text())
                time.sleep(self.rng.uniform(0.2, 2.0))  # let the sampler and the watchers see it
        finally:
            self.resume_all()
        return self.done

    def do(self, step: Step) -> str:
        node = step.node
        others_away = any(s != "up" for s in self.state.values())
        if step.kind == "stop":
            assert node is not None
            self.lab.duo("node", "stop", node)
            self.state[node], self.away_for = "down", 0
            return ""
        if step.kind == "start":
            assert node is not None
            self.lab.duo("node", "start", node)
            self.state[node] = "up"
            return ""
        if step.kind == "pause":
            assert node is not None
            pid = daemons.status(self.duo.node(node))["signerd"]
            assert pid is not None, f"node {node}: no ods-signerd pid"
            self.paused_pids.add(pid)
            os.kill(pid, signal.SIGSTOP)
            self.state[node], self.away_for = "paused", 0
            return f"pid {pid}"
        if step.kind == "resume":
            assert node is not None
            self.resume_all()
            self.state[node] = "up"
            return ""
        if others_away:
            self.away_for += 1
        if step.kind in ("edit", "update"):
            owner = f"s{self.seed}-{step.index}-{step.kind}"
            text = self.versions.next(owner).read_text()
            self.sampler.expect(version_digest(self.lab, text))
            self.newest_owner = owner
            path = self.lab.dir / "input" / ZONE
            write_like_an_editor(path, text)  # the watchers see it either way
            if step.kind == "edit":
                return owner
            proc = self.lab.duo("--json", "zone", "update", ZONE, "--file", str(path), check=False)
            want = 1 if others_away else 0  # a node that is down misses it (its input is stored)
            if proc.returncode != want:
                self.problems.append(
                    f"step {step.index}: zone update exited {proc.returncode}, not {want}: "
                    f"{proc.stdout.strip()[-500:]} {proc.stderr.strip()[-500:]}"
                )
            return f"{owner} exit {proc.returncode}"
        if step.kind == "restore":
            assert node is not None
            self.lab.duo("node", "stop", node)
            remove_tree(self.duo.node(node).paths.base)  # the node's disk is lost
            proc = self.lab.duo("--json", "backup", "restore", "--node", node, check=False)
            self.restored = True
            if proc.returncode != 0:
                self.problems.append(f"step {step.index}: backup restore --node {node} failed: {proc.stderr}")
                return f"exit {proc.returncode}"
            result = json.loads(proc.stdout)
            return f"from {result.get('from')}, serials {result.get('serials')}"
        raise AssertionError(f"unknown step {step.kind}")

    def resume_all(self) -> None:
        for pid in sorted(self.paused_pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused_pids.clear()

    def settle(self, timeout: float = 60.0) -> float:
        """Every node up and resumed, then until every server serves the newest content: seconds."""
        self.resume_all()
        for node, state in self.state.items():
            if state == "down":
                self.lab.duo("node", "start", node)
            self.state[node] = "up"
        started = time.monotonic()
        if self.newest_owner:
            wait_newest(self.lab, self.sampler, self.newest_owner, timeout)
        return time.monotonic() - started

    def replay(self) -> str:
        return f"ODS_DUO_RANDOM_SEED={self.seed} ({len(self.done)} steps):\n" + "\n".join(
            s.text() for s in self.done
        )


def write_like_an_editor(path: Path, text: str) -> None:
    """Write a temp file next to it, then rename over it: the watcher sees one complete file."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)
