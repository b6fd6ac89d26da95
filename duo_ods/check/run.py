"""Run the checks for zones of a duo (live) or for given sources (offline).

Copies are fetched on threads (fetch.Fetcher: a timeout per copy, and a server that timed out is
not waited for again in the same run), a few zones ahead of the checks. Each copy is then parsed
and checked on its own in a worker process, one per core, so the copies of both signers are
verified at the same time. A worker sends back only findings (see
checks.SourceFindings), plus what it received, should a second phase need it: verifying one
copy's signatures under another copy's keys is needed only where those key sets differ; under an
identical key set the copy's own results are the answer, so no signature is verified twice under
the same keys. Copies beyond the first wave (the secondaries) get the verifications already done
and only verify what differs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import dns.exception
import dns.rrset

from duo_ods.check.checks import (
    SourceFindings,
    check_enforcer_ksks,
    check_expiry,
    check_parent_ds,
    compare_sources,
    count_failures,
    cross_needed,
    findings,
    verify_all,
)
from duo_ods.check.ds import ParentDs, refuse_other_zones
from duo_ods.check.fetch import DEFAULT_TIMEOUT, Fetched, Fetcher
from duo_ods.check.keyplan import key_plan_warnings
from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.newest import Newest, check_newest, input_records
from duo_ods.check.sources import (
    AxfrSource,
    FileSource,
    Raw,
    Source,
    SourceError,
    failure,
    parse_source,
    read,
    reload,
)
from duo_ods.check.verify import KeySet
from duo_ods.check.zoneview import unsigned_records
from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.dns.names import normalize_zone_name
from duo_ods.dns.tsig import TsigKey, transfer_key
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.drift import state_drift
from duo_ods.ods.kaspdb import is_dead
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.ops import KEY_STATES, STATUS, ZONE_LIST, KeyStatesRequest
from duo_ods.zones.inputs import InputRecordError, latest_input

log = logging.getLogger(__name__)

NODE_TIMEOUT = 10.0  # seconds for a node's zones or key states (ODS answers in well under one)
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    zone: str
    now: float


@dataclass
class Outcome:
    """What a worker sends back for one copy."""

    name: str
    error: str = ""
    findings: SourceFindings | None = None
    valid: frozenset[bytes] = frozenset()  # verifications done and valid (checks.verification_key)


@contextmanager
def _no_gc() -> Iterator[None]:
    """Reading a copy makes a million objects and no reference cycles: the cycle collector would
    only scan them again and again (it doubles the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_source(job: Job, fetched: Fetched, known: frozenset[bytes], record: bool) -> Outcome:
    """Parse and check one fetched copy (in a worker)."""
    with _no_gc():
        return _check_source(job, fetched, known, record)


def _check_source(job: Job, fetched: Fetched, known: frozenset[bytes], record: bool) -> Outcome:
    if fetched.raw is None:
        return Outcome(fetched.name, error=fetched.error or "no data")
    started = time.monotonic()
    try:
        view = read(fetched.raw, job.zone, failure(fetched.source, job.zone))
    except SourceError as exc:
        return Outcome(fetched.name, error=str(exc))
    loaded = time.monotonic()
    keys = KeySet(view.dnskeys) if view.dnskeys is not None else None
    results, valid = verify_all(view, keys, job.now, known, record) if keys else (None, set[bytes]())
    verified = time.monotonic()
    found = findings(view, fetched.name, results)
    found.keyset = keys.id if keys else None
    found.data = unsigned_records(view)
    log.debug(
        "%s %s: %d records read in %.1f s, %d signatures verified in %.1f s, other checks %.1f s",
        job.zone, fetched.name, view.data.records, loaded - started, len(view.data.rrsigs), verified - loaded,
        time.monotonic() - verified,
    )  # fmt: skip
    return Outcome(fetched.name, findings=found, valid=frozenset(valid))


def cross_check(job: Job, raw: Raw, keysets: Sequence[dns.rrset.RRset]) -> dict[str, int]:
    """How many of the copy's signatures fail under each of other copies' key sets (in a worker)."""
    with _no_gc():
        view = reload(raw, job.zone)
        return {keys.id: count_failures(view, keys, job.now) for keys in map(KeySet, keysets)}


class _Inline(Executor):
    """Runs each call at once, here: for one source or one core."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def default_workers(sources: int) -> int:
    return max(1, min(len(os.sched_getaffinity(0)), sources))


def pool(workers: int) -> Executor:
    if workers <= 1:
        return _Inline()
    # fork: the workers start at once with everything imported (the default on Linux before 3.14)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


@dataclass(frozen=True)
class Expected:
    """What a zone's copies are checked against besides each other: the KSKs (key tag, algorithm)
    that the enforcers use, and the DS records the operator gave with --ds."""

    ksks: frozenset[tuple[int, int]] = frozenset()
    parent_ds: tuple[ParentDs, ...] = ()
    newest: Newest | None = None  # the zone's newest recorded input (check.newest)
    secondaries: frozenset[str] = frozenset()  # the copies that must serve it


class ZoneCheck:
    """The check of one zone, from its copies as the fetcher brings them: the first copies on the
    workers at once, the rest (the secondaries) with the verifications already done."""

    def __init__(  # noqa: PLR0917
        self, executor: Executor, workers: int, zone: str, fetches: Sequence[Future[Fetched]],
        limits: Thresholds, now: float | None = None,
    ) -> None:  # fmt: skip
        self.executor = executor
        self.workers = workers
        self.job = Job(zone, time.time() if now is None else now)
        self.limits = limits
        self.fetches = list(fetches)

    def finish(self, expected: Expected | None = None) -> ZoneReport:
        expected = expected or Expected()
        started = time.monotonic()
        fetched = [f.result() for f in self.fetches]
        log.debug("%s: waited %.1f s for the copies", self.job.zone, time.monotonic() - started)
        first, rest = fetched[: self.workers], fetched[self.workers :]
        record = bool(rest)
        started_first = [self.executor.submit(check_source, self.job, c, frozenset(), record) for c in first]
        outcomes = [f.result() for f in started_first]
        if rest:
            known = frozenset().union(*(o.valid for o in outcomes))
            later = [self.executor.submit(check_source, self.job, c, known, False) for c in rest]
            outcomes += [f.result() for f in later]
        report = ZoneReport(self.job.zone)
        copies = []
        for outcome in outcomes:
            found = outcome.findings
            if found is None:
                report.add("critical", outcome.name, outcome.error or "no data")
                continue
            report.serials[found.name] = found.serial
            report.problems += found.problems
            if found.signatures is not None:
                report.signatures[found.name] = found.signatures
            if found.soonest_expiration is not None:
                report.expirations[found.name] = found.soonest_expiration
            if found.keyset is not None:
                report.keysets[found.name] = found.keyset
            check_enforcer_ksks(found, expected.ksks, report)
            check_parent_ds(found, [d.rdata for d in expected.parent_ds], report)
            check_expiry(found, self.job.now, self.limits, report)
            copies.append(found)
        check_newest(
            copies, expected.secondaries, expected.newest, report,
            now=self.job.now, stale_after=self.limits.stale_after,
        )  # fmt: skip
        if len(copies) > 1:
            started = time.monotonic()
            compare_sources(copies, self._cross(fetched, copies), self.limits, report)
            log.debug("%s: copies compared in %.1f s", self.job.zone, time.monotonic() - started)
        return report

    def _cross(
        self, fetched: Sequence[Fetched], copies: Sequence[SourceFindings]
    ) -> dict[tuple[str, str], int]:
        """The second phase, for copies whose key sets differ (the broken case): verify again."""
        raws = {f.name: f.raw for f in fetched}
        dnskeys = {c.keyset: c.dnskeys for c in copies if c.keyset is not None and c.dnskeys is not None}
        futures = {}
        for name, keysets in cross_needed(copies).items():
            raw = raws[name]
            assert raw is not None
            futures[name] = self.executor.submit(
                cross_check, self.job, raw, [dnskeys[k] for k in sorted(keysets)]
            )
        return {(name, keyset): n for name, f in futures.items() for keyset, n in f.result().items()}


def check_zone(  # noqa: PLR0917 (all but the first two have defaults)
    zone: str,
    sources: Sequence[Source],
    parent_ds: Sequence[ParentDs] = (),
    limits: Thresholds | None = None,
    now: float | None = None,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    fetcher: Fetcher | None = None,
) -> ZoneReport:
    """All checks on the copies of one zone; a missing copy is a problem, the rest still runs."""
    workers = workers or default_workers(len(sources))
    with ExitStack() as stack:
        if fetcher is None:
            fetcher = stack.enter_context(Fetcher(timeout))
        executor = stack.enter_context(pool(workers))
        fetches = [fetcher.submit(zone, s) for s in sources]
        check = ZoneCheck(executor, workers, zone, fetches, limits or Thresholds(), now)
        return check.finish(Expected(parent_ds=tuple(parent_ds)))


def live_sources(duo: Duo, zone: str) -> list[Source]:
    """The zone from every signer's listener, then from every configured secondary (TSIG)."""
    tsig = transfer_key(duo)
    sources: list[Source] = [AxfrSource(name, n.address, n.port, tsig) for name, n in duo.nodes.items()]
    sources += [AxfrSource(s.name, s.address, s.port, tsig) for s in duo.config.secondaries]
    return sources


KeyViews = dict[str, list[dict[str, Any]]]  # zone -> its keys' enforcer states (kaspdb.KeyStates.to_json)


@dataclass
class NodeView:
    """What one node's enforcer says, read once for every zone: its zones (from the running
    enforcer) and its keys' states (from its database, so also while the enforcer is stopped)."""

    name: str
    zones: set[str] | None = None  # None: the enforcer could not be asked
    enforcer_error: str = ""
    states: KeyViews | None = None  # None: the database could not be read
    database_error: str = ""
    daemons: dict[str, int | None] | None = None  # daemon -> pid (None: not running); None: not asked

    def problems(self) -> list[str]:
        """What to mark the node with, on every zone."""
        # A stopped enforcer is named by the enforcer's own line below ("enforcer is not running").
        found = [
            f"ods-{daemon} is not running on node {self.name} (`ods-duo node start {self.name}`; its "
            "watcher starts a daemon that died again by itself)"
            for daemon, pid in (self.daemons or {}).items()
            if pid is None and not (daemon == "enforcerd" and self.zones is None)
        ]
        if self.zones is None:
            found.append(
                f"its enforcer does not answer ({self.enforcer_error}); key maintenance on this node is "
                "stopped" + ("; key states read from its database" if self.states is not None else "")
            )
        if self.states is None:
            found.append(f"cannot read its enforcer database: {self.database_error}")
        return found


def _zone_names(client: NodeClient, node: str, timeout: float) -> set[str]:
    """The zones the node's running enforcer has (a hung enforcer costs `timeout`, not the
    transport's minutes)."""
    return {normalize_zone_name(z) for z in client.call(node, ZONE_LIST, timeout=timeout).names}


def _daemons(client: NodeClient, node: str, timeout: float) -> dict[str, int | None]:
    """The node's daemons and their pids (None: not running), to name a stopped one."""
    return client.call(node, STATUS, timeout=timeout).daemons


def _key_states(client: NodeClient, node: str, timeout: float) -> KeyViews:
    """Every zone's key states from the node's enforcer database."""
    zones = client.call(node, KEY_STATES, KeyStatesRequest(), timeout=timeout).zones
    return {z.zone: [k.model_dump() for k in z.keys] for z in zones}


class NodeViews:
    """Every node asked at once, on threads: its enforcer for its zones and its database for the
    key states, side by side (each is a round trip of its own, a process start in the lab)."""

    def __init__(self, duo: Duo, client: NodeClient, timeout: float) -> None:
        self._threads = ThreadPoolExecutor(max_workers=2 * len(duo.nodes), thread_name_prefix="check-nodes")
        ask = self._threads.submit
        self._asked = {
            node: (
                ask(_zone_names, client, node, timeout),
                ask(_key_states, client, node, timeout),
                ask(_daemons, client, node, timeout),
            )
            for node in duo.nodes
        }
        self._views: dict[str, NodeView] | None = None

    def get(self) -> dict[str, NodeView]:
        """The answers (waits for them the first time)."""
        if self._views is None:
            started = time.monotonic()
            self._views = {node: self._view(node, *asked) for node, asked in self._asked.items()}
            self._threads.shutdown()
            log.debug("enforcers asked (waited %.1f s)", time.monotonic() - started)
        return self._views

    @staticmethod
    def _view(
        node: str, zones: Future[set[str]], states: Future[KeyViews], pids: Future[dict[str, int | None]]
    ) -> NodeView:
        view = NodeView(node)
        with contextlib.suppress(DuoError):  # a node that does not answer: its other errors say so
            view.daemons = pids.result()
        try:
            view.zones = zones.result()
        except DuoError as exc:
            view.enforcer_error = str(exc)
        try:
            view.states = states.result()
        except DuoError as exc:
            view.database_error = str(exc)
        return view


def zones_to_check(views: Mapping[str, NodeView]) -> list[str]:
    """Every zone any enforcer has; when no enforcer answers, every zone in their databases."""
    found: set[str] = set()
    for view in views.values():
        found |= view.zones or set()
    if not any(v.zones is not None for v in views.values()):
        for view in views.values():
            found |= set(view.states or {})
    if not found and all(v.zones is None and v.states is None for v in views.values()):
        # Nothing to check is not "all valid": say that the nodes could not be asked.
        silent = [f"node {v.name}: {v.enforcer_error}; {v.database_error}" for v in views.values()]
        raise NodeError("cannot list the zones to check: " + "; ".join(silent))
    return sorted(found)


# The enforcer's states of a key's signature over the DNSKEY RRset while that signature may be in
# the zone: being introduced, there, or being withdrawn (caches may still hold it).
SIGNING_STATES = frozenset({"rumoured", "omnipresent", "unretentive"})


def enforcer_ksks(views: Mapping[str, NodeView], zone: str) -> frozenset[tuple[int, int]]:
    """(key tag, algorithm) of the zone's KSKs and CSKs that some enforcer has in use: a new key
    (introducing) or one whose signature over the DNSKEY RRset the enforcer still has in the zone.
    A KSK rollover clears the old key's `introducing` when it starts, while that key still signs
    the DNSKEY RRset until the new key's signature is out (seen in test_autoroll): still in use."""
    found: set[tuple[int, int]] = set()
    for view in views.values():
        for key in (view.states or {}).get(zone, []):
            if key["role"] not in {"KSK", "CSK"} or is_dead(key):
                continue
            signing = any(r["type"] == "rrsigdnskey" and r["state"] in SIGNING_STATES for r in key["records"])
            if key["flags"].get("introducing") or signing:
                found.add((int(key["keytag"]), int(key["algorithm"])))
    return frozenset(found)


def enforcer_problems(duo: Duo, views: Mapping[str, NodeView], zone: str) -> list[tuple[str, str]]:
    """(source, message) warnings for the zone: nodes whose enforcer could not be asked, and key
    state drift between the nodes. The signed data is checked on its own; a silent enforcer stops
    key maintenance, not signing, so these warn rather than fail the zone."""
    found = [(node, problem) for node, view in views.items() for problem in view.problems()]
    drift = key_drift(duo, views, zone)
    if drift:
        found.append(("duo", "enforcer key states differ between the nodes: " + "; ".join(drift)))
    return found


def key_drift(duo: Duo, views: Mapping[str, NodeView], zone: str) -> list[str] | None:
    """How the zone's key states differ between the nodes; None when a node's could not be read."""
    states = {node: (v.states or {}).get(zone, []) for node, v in views.items() if v.states is not None}
    if len(states) != len(duo.nodes):
        return None
    return state_drift(states, parse_duration(duo.config.policy.skew_margin))


def newest_input(duo: Duo, zone: str) -> Newest | None:
    """The zone's newest recorded input, if this controller has one (and it parses)."""
    try:
        record = latest_input(duo, zone)
        return None if record is None else Newest(input_records(record.text, zone), record.at)
    except (InputRecordError, dns.exception.DNSException) as exc:
        log.warning("zone %s: newest input not compared: %s", zone, exc)
        return None


PREFETCH_ZONES = 4  # zones whose copies are fetched ahead of the one being checked (memory bound)


def check_duo(  # noqa: PLR0917
    duo: Duo,
    client: NodeClient,
    zones: Sequence[str],
    limits: Thresholds,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    parent_ds: Mapping[str, Sequence[ParentDs]] | None = None,
    on_zone: Callable[[ZoneReport], None] | None = None,
) -> list[ZoneReport]:
    """Check zones (default: every zone on any node) on every signer and secondary; `on_zone` hears
    of each report as it is done (the CLI's progress display)."""
    parent_ds = parent_ds or {}
    nodes = NodeViews(
        duo, client, max(NODE_TIMEOUT, timeout)
    )  # meanwhile, given zones are fetched and checked
    names = [normalize_zone_name(z) for z in zones] if zones else zones_to_check(nodes.get())
    refuse_other_zones(parent_ds, names)
    reports = []
    secondaries = frozenset(s.name for s in duo.config.secondaries)
    workers = workers or default_workers(len(duo.nodes) + len(duo.config.secondaries))
    with Fetcher(timeout) as fetcher, pool(workers) as executor:
        fetches: list[list[Future[Fetched]]] = []
        for index, zone in enumerate(names):
            for ahead in names[len(fetches) : index + 1 + PREFETCH_ZONES]:
                fetches.append([fetcher.submit(ahead, s) for s in live_sources(duo, ahead)])
            check = ZoneCheck(executor, workers, zone, fetches[index], limits)
            views = nodes.get()
            expected = Expected(
                enforcer_ksks(views, zone),
                tuple(parent_ds.get(zone, ())),
                newest_input(duo, zone),
                secondaries,
            )
            report = check.finish(expected)
            fetches[index] = []  # let the copies go
            for source, problem in enforcer_problems(duo, views, zone):
                report.add("warning", source, problem)
            drift = key_drift(duo, views, zone)
            report.key_state_drift = None if drift is None else len(drift)
            states = {n: (v.states or {}).get(zone, []) for n, v in views.items() if v.states is not None}
            for source, problem in key_plan_warnings(duo, client, zone, states, report.min_expiry_days):
                report.add("warning", source, problem)
            reports.append(report)
            if on_zone is not None:
                on_zone(report)
    return reports


def check_given(  # noqa: PLR0917
    zone: str,
    specs: Sequence[str],
    parent_ds: Sequence[ParentDs],
    limits: Thresholds,
    tsig: TsigKey | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ZoneReport:
    """Offline (or ad hoc) check of saved files and/or servers given with --source."""
    zone = normalize_zone_name(zone)
    sources: list[Source] = []
    file_names = [t.name for t in map(parse_source, specs) if isinstance(t, Path)]
    for spec in specs:
        target = parse_source(spec)
        if isinstance(target, tuple):
            sources.append(AxfrSource(spec, target[0], target[1], tsig))
        else:
            # Short names read better; fall back to the path when two files share a name.
            unique = file_names.count(target.name) == 1
            sources.append(FileSource(target.name if unique else str(target), target))
    return check_zone(zone, sources, parent_ds, limits, timeout=timeout)
