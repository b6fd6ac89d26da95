"""Run the checks for zones of a duo (live) or for given sources (offline).

Each copy is fetched, parsed and checked on its own in a worker process, one per core, so the
copies of both signers are verified at the same time. A worker sends back only findings (see
checks.SourceFindings), plus what it received, should a second phase need it: verifying one
copy's signatures under another copy's keys is needed only where those key sets differ; under an
identical key set the copy's own results are the answer, so no signature is verified twice under
the same keys. Copies beyond the first wave (the secondaries) get the verifications already done
and only verify what differs.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import dns.rrset

from duo_ods.bind.tsig import TsigKey, transfer_key
from duo_ods.check.checks import (
    SourceFindings,
    check_ds,
    check_expiry,
    compare_sources,
    count_failures,
    cross_needed,
    findings,
    verify_all,
)
from duo_ods.check.model import Thresholds, ZoneReport
from duo_ods.check.sources import AxfrSource, FileSource, Raw, Source, SourceError, load, parse_source, reload
from duo_ods.check.verify import KeySet
from duo_ods.check.zoneview import unsigned_records
from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo
from duo_ods.errors import DuoError, NodeError
from duo_ods.keys.drift import state_drift
from duo_ods.keys.listing import ds_for_zone
from duo_ods.protocol.client import NodeClient
from duo_ods.protocol.ops import KEY_STATES, ZONE_LIST, KeyStatesRequest
from duo_ods.zones.check import normalize_zone_name

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    zone: str
    now: float


@dataclass
class Outcome:
    """What a worker sends back for one source."""

    name: str
    error: str = ""
    findings: SourceFindings | None = None
    raw: Raw | None = None  # for a second phase
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


def check_source(job: Job, source: Source, known: frozenset[bytes], record: bool) -> Outcome:
    """Fetch, parse and check one copy (in a worker)."""
    with _no_gc():
        return _check_source(job, source, known, record)


def _check_source(job: Job, source: Source, known: frozenset[bytes], record: bool) -> Outcome:
    started = time.monotonic()
    try:
        raw, view = load(source, job.zone)
    except SourceError as exc:
        return Outcome(source.name, error=str(exc))
    loaded = time.monotonic()
    keys = KeySet(view.dnskeys) if view.dnskeys is not None else None
    results, valid = verify_all(view, keys, job.now, known, record) if keys else (None, set[bytes]())
    verified = time.monotonic()
    found = findings(view, source.name, results)
    found.keyset = keys.id if keys else None
    found.data = unsigned_records(view)
    log.debug(
        "%s %s: %d records read in %.1f s, %d signatures verified in %.1f s, other checks %.1f s",
        job.zone, source.name, view.data.records, loaded - started, len(view.data.rrsigs), verified - loaded,
        time.monotonic() - verified,
    )  # fmt: skip
    return Outcome(source.name, findings=found, raw=raw, valid=frozenset(valid))


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


class ZoneCheck:
    """The check of one zone: started on the workers at once, finished once the DS records
    (from the enforcers, meanwhile) are known."""

    def __init__(  # noqa: PLR0917
        self, executor: Executor, workers: int, zone: str, sources: Sequence[Source], limits: Thresholds,
        now: float | None = None,
    ) -> None:  # fmt: skip
        self.executor = executor
        self.job = Job(zone, time.time() if now is None else now)
        self.limits = limits
        self.rest = list(sources[workers:])
        record = bool(self.rest)
        self.first = [
            executor.submit(check_source, self.job, s, frozenset(), record) for s in sources[:workers]
        ]

    def finish(self, ds_records: Sequence[str] = ()) -> ZoneReport:
        started = time.monotonic()
        outcomes = [f.result() for f in self.first]
        log.debug("%s: waited %.1f s for the first copies", self.job.zone, time.monotonic() - started)
        if self.rest:
            known = frozenset().union(*(o.valid for o in outcomes))
            later = [self.executor.submit(check_source, self.job, s, known, False) for s in self.rest]
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
            check_ds(found, ds_records, report)
            check_expiry(found, self.job.now, self.limits, report)
            copies.append(found)
        if len(copies) > 1:
            started = time.monotonic()
            compare_sources(copies, self._cross(outcomes, copies), self.limits, report)
            log.debug("%s: copies compared in %.1f s", self.job.zone, time.monotonic() - started)
        return report

    def _cross(
        self, outcomes: Sequence[Outcome], copies: Sequence[SourceFindings]
    ) -> dict[tuple[str, str], int]:
        """The second phase, for copies whose key sets differ (the broken case): verify again."""
        raws = {o.name: o.raw for o in outcomes}
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
    ds_records: Sequence[str] = (),
    limits: Thresholds | None = None,
    now: float | None = None,
    workers: int | None = None,
) -> ZoneReport:
    """All checks on the copies of one zone; a missing copy is a problem, the rest still runs."""
    workers = workers or default_workers(len(sources))
    with pool(workers) as executor:
        return ZoneCheck(executor, workers, zone, sources, limits or Thresholds(), now).finish(ds_records)


def live_sources(duo: Duo, zone: str) -> list[Source]:
    """The zone from every signer's listener, then from every configured secondary (TSIG)."""
    tsig = transfer_key(duo)
    sources: list[Source] = [AxfrSource(name, n.address, n.port, tsig) for name, n in duo.nodes.items()]
    sources += [AxfrSource(s.name, s.address, s.port, tsig) for s in duo.config.secondaries]
    return sources


def _enforcer_view(duo: Duo, client: NodeClient, zone: str) -> tuple[list[str], list[str], list[str]]:
    """The published DS records, key state drift between the nodes, and what could not be read.

    Key states come from each node's enforcer database, so a stopped enforcer still shows
    where it stopped and the drift against the running one.
    """
    views: dict[str, list[dict[str, Any]]] = {}
    unreadable: list[str] = []
    for node in duo.nodes:
        try:
            keys = client.call(node, KEY_STATES, KeyStatesRequest(zone=zone)).keys_of(zone)
            views[node] = [k.model_dump() for k in keys or []]
        except DuoError as exc:
            unreadable.append(f"node {node}: cannot read its enforcer database: {exc}")
    margin = parse_duration(duo.config.policy.skew_margin)
    drift = state_drift(views, margin) if len(views) == len(duo.nodes) else []
    try:
        ds_records = ds_for_zone(duo, client, zone).ds
    except DuoError as exc:
        unreadable.append(f"cannot read the enforcers' keys: {exc}")
        ds_records = []
    return ds_records, drift, unreadable


def check_duo(
    duo: Duo, client: NodeClient, zones: Sequence[str], limits: Thresholds, workers: int | None = None
) -> list[ZoneReport]:
    """Check zones (default: every zone on any node) on every signer and secondary."""
    if not zones:
        found: set[str] = set()
        silent: list[str] = []
        for node in duo.nodes:
            try:
                found |= set(client.call(node, ZONE_LIST).names)
            except DuoError as exc:
                silent.append(str(exc))  # a node that answers still names the zones to check
        if not found and silent:
            # Nothing to check is not "all valid": say that the nodes could not be asked.
            raise NodeError("cannot list the zones to check: " + "; ".join(silent))
        zones = sorted(found)
    reports = []
    workers = workers or default_workers(len(duo.nodes) + len(duo.config.secondaries))
    with pool(workers) as executor:
        for zone in (normalize_zone_name(z) for z in zones):
            started = ZoneCheck(executor, workers, zone, live_sources(duo, zone), limits)
            asked = time.monotonic()
            ds_records, drift, unreadable = _enforcer_view(duo, client, zone)  # while the workers work
            log.debug("%s: enforcers asked in %.1f s", zone, time.monotonic() - asked)
            report = started.finish(ds_records)
            for problem in unreadable:
                # The signed data is checked above on its own; a silent enforcer stops key
                # maintenance, not signing, so it warns rather than fails the zone.
                report.add("warning", "duo", problem)
            if drift:
                report.add(
                    "warning", "duo", "enforcer key states differ between the nodes: " + "; ".join(drift)
                )
            reports.append(report)
    return reports


def check_given(
    zone: str,
    specs: Sequence[str],
    ds_records: Sequence[str],
    limits: Thresholds,
    tsig: TsigKey | None = None,
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
    return check_zone(zone, sources, ds_records, limits)
