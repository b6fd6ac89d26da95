"""Fetching many zones' copies at once: a silent server costs one timeout per run, not one per
zone. Fake sources that sleep test the scheduling; a real listening socket that never answers
(what a SIGSTOP'ed signer is to its clients) tests the AXFR reader's timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from duo_ods.check.fetch import Fetched, Fetcher
from duo_ods.check.run import check_zone
from duo_ods.check.sources import (
    AxfrSource,
    FileSource,
    Raw,
    Source,
    SourceError,
    SourceTimeout,
    failure,
    fetch,
)
from tests.unit.check.signer import NOW, Key, signed

TIMEOUT = 0.5


class FakeServers:
    """Sources by name: 'hung' stays silent (sleeps out the timeout), 'down' refuses at once,
    'late' answers a few times and then hangs; any other answers after `delay`."""

    def __init__(self, delay: float = 0.05, late_after: int = 3) -> None:
        self.delay = delay
        self.late_after = late_after
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0

    def fetch(self, source: Source, zone: str, timeout: float) -> Raw:
        with self.lock:
            self.calls[source.name] = self.calls.get(source.name, 0) + 1
            calls = self.calls[source.name]
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if source.name == "down":
                raise SourceError(f"{failure(source, zone)}: [Errno 111] Connection refused")
            if source.name == "hung" or (source.name == "late" and calls > self.late_after):
                time.sleep(timeout)
                raise SourceTimeout(f"{failure(source, zone)}: no answer within {timeout:g} s")
            time.sleep(self.delay)
            return f"{zone} from {source.name}"
        finally:
            with self.lock:
                self.running -= 1


SERVERS = {
    name: AxfrSource(name, f"192.0.2.{i}", 53) for i, name in enumerate(["a", "hung", "ns1", "down", "late"])
}


@dataclass
class Run:
    results: dict[tuple[str, str], Fetched]
    silent: dict[str, str]
    took: float


def run_all(fake: FakeServers, zones: list[str], names: list[str], threads: int = 16) -> Run:
    started = time.monotonic()
    with Fetcher(TIMEOUT, threads=threads, fetch=fake.fetch) as fetcher:
        futures = {(z, n): fetcher.submit(z, SERVERS[n]) for z in zones for n in names}
        results = {key: f.result() for key, f in futures.items()}
        silent = fetcher.silent()
    return Run(results, silent, time.monotonic() - started)


def test_a_hung_server_costs_one_timeout_for_a_hundred_zones() -> None:
    fake = FakeServers()
    zones = [f"z{i:03}.test" for i in range(100)]
    run = run_all(fake, zones, ["a", "hung", "ns1"])
    results, took = run.results, run.took
    assert took < 3 * TIMEOUT, took  # not 100 timeouts, not even a few
    assert fake.calls["hung"] == 1  # asked once; the rest were not waited for
    assert fake.calls["a"] == fake.calls["ns1"] == 100
    hung = [results[z, "hung"] for z in zones]
    timed_out = [f for f in hung if "no answer within 0.5 s" in f.error]
    assert len(timed_out) == 1 and timed_out[0].raw is None
    first = timed_out[0].zone
    skipped = [f for f in hung if f is not timed_out[0]]
    assert all(
        f.raw is None
        and f.error
        == f"no AXFR of {f.zone} from 192.0.2.1 port 53: not asked, it did not answer within "
        f"0.5 s for {first} earlier in this run"
        for f in skipped
    ), skipped[0].error
    assert all(results[z, n].raw == f"{z} from {n}" for z in zones for n in ("a", "ns1"))
    assert run.silent == {
        "192.0.2.1 port 53": f"it did not answer within 0.5 s for {first} earlier in this run"
    }


def test_servers_that_answer_are_asked_in_parallel() -> None:
    fake = FakeServers(delay=0.2)
    zones = [f"z{i}.test" for i in range(16)]
    took = run_all(fake, zones, ["a", "ns1"]).took
    assert took < 16 * 0.2 / 2, took  # one at a time would take 16 x 0.2 s per server
    assert fake.most_running > 4


def test_a_refusing_server_is_asked_again() -> None:
    fake = FakeServers()
    zones = [f"z{i}.test" for i in range(5)]
    run = run_all(fake, zones, ["down"])
    assert fake.calls["down"] == 5 and run.took < TIMEOUT  # refused at once: nothing to remember
    assert all("Connection refused" in run.results[z, "down"].error for z in zones)
    assert run.silent == {}


def test_a_server_that_hangs_midway_costs_about_one_timeout() -> None:
    fake = FakeServers(late_after=3)
    zones = [f"z{i:02}.test" for i in range(40)]
    run = run_all(fake, zones, ["late"], threads=8)
    results, took = run.results, run.took
    answered = [z for z in zones if results[z, "late"].raw is not None]
    assert len(answered) == 3
    # Those in flight when it hung each waited out the timeout, side by side; no more were asked.
    assert took < 3 * TIMEOUT, took
    assert fake.calls["late"] <= 3 + 8
    assert all("not asked" in results[z, "late"].error for z in zones[3 + 8 :])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP listener that never accepts: the kernel completes the handshake, nothing answers
    (a SIGSTOP'ed ods-signerd)."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_real_silent_server_times_out(silent_server: int) -> None:
    source = AxfrSource("b", "127.0.0.1", silent_server)
    started = time.monotonic()
    with pytest.raises(
        SourceTimeout, match=r"^no AXFR of example\.test from 127\.0\.0\.1 port \d+: no answer within 0\.3 s$"
    ):
        fetch(source, "example.test", 0.3)
    assert 0.25 < time.monotonic() - started < 2


def test_check_names_the_silent_copy_and_checks_the_rest(silent_server: int, tmp_path: Path) -> None:
    zone = signed(ksk=Key.make(flags=257), zsk=Key.make())
    zone.to_file(str(tmp_path / "a"), relativize=False, want_origin=True)
    sources = [FileSource("a", tmp_path / "a"), AxfrSource("b", "127.0.0.1", silent_server)]
    started = time.monotonic()
    report = check_zone("example.test", sources, now=NOW, workers=2, timeout=0.3)
    assert time.monotonic() - started < 5
    assert [(p.severity, p.source) for p in report.problems] == [("critical", "b")]
    assert report.problems[0].message.endswith(": no answer within 0.3 s")
    assert report.signatures["a"] > 10 and "b" not in report.serials
