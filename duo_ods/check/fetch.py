"""Fetching the copies of many zones at once, on threads, with a timeout per copy.

Fetching is waiting on the network, so threads do it (the checks of what they fetch run in
worker processes, see run.py). A server that stays silent (a hung signer accepts the connection
and never answers) costs one timeout per run, not one per zone:

- until a server has answered once, one fetch from it runs at a time: the others wait for its
  outcome instead of each waiting out the timeout on their own;
- once a server has timed out, the fetches from it that follow give up at once, saying why.

A server that refuses the connection or answers with an error is not remembered: that is quick
to find out again, and may be about one zone only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from duo_ods.check.sources import AxfrSource, Raw, Source, SourceError, SourceTimeout, failure
from duo_ods.check.sources import fetch as fetch_source

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds a copy's server may stay silent
DEFAULT_THREADS = 16

FetchFn = Callable[[Source, str, float], Raw]


@dataclass(frozen=True)
class Fetched:
    """One copy as it came (`raw`), or why there is none (`error`)."""

    source: Source
    zone: str
    raw: Raw | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class _Server:
    """What this run has learnt about one server."""

    first: threading.Lock = field(default_factory=threading.Lock)  # held by the fetch that probes it
    answered: bool = False
    silent: str = ""  # why it is not asked again: it timed out (for which zone)


def _server_key(source: Source) -> tuple[str, int] | None:
    return (source.address, source.port) if isinstance(source, AxfrSource) else None


class Fetcher:
    """Fetches (zone, source) pairs on a thread pool; `submit` returns at once."""

    def __init__(
        self, timeout: float = DEFAULT_TIMEOUT, threads: int = DEFAULT_THREADS, fetch: FetchFn = fetch_source
    ) -> None:
        self.timeout = timeout
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="check-fetch")
        self._servers: dict[tuple[str, int], _Server] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, zone: str, source: Source) -> Future[Fetched]:
        return self._pool.submit(self.get, zone, source)

    def silent(self) -> dict[str, str]:
        """The servers (ADDR port P) that timed out in this run, and why."""
        with self._lock:
            return {f"{a} port {p}": s.silent for (a, p), s in self._servers.items() if s.silent}

    def _server(self, source: Source) -> _Server | None:
        key = _server_key(source)
        if key is None:
            return None
        with self._lock:
            return self._servers.setdefault(key, _Server())

    def get(self, zone: str, source: Source) -> Fetched:
        """The copy of the zone from the source (on the calling thread)."""
        server = self._server(source)
        if server is None:  # a file: nothing to wait for
            return self._run(zone, source, None)
        if server.silent:
            return self._skipped(zone, source, server)
        if server.answered:
            return self._run(zone, source, server)
        with server.first:  # one probe at a time until the server has answered once
            if server.silent:
                return self._skipped(zone, source, server)
            if not server.answered:
                return self._run(zone, source, server)
        return self._run(zone, source, server)  # it answered meanwhile: no need to queue

    def _skipped(self, zone: str, source: Source, server: _Server) -> Fetched:
        return Fetched(source, zone, error=f"{failure(source, zone)}: not asked, {server.silent}")

    def _run(self, zone: str, source: Source, server: _Server | None) -> Fetched:
        try:
            raw = self._fetch(source, zone, self.timeout)
        except SourceTimeout as exc:
            if server is not None and not server.silent:
                server.silent = f"it did not answer within {self.timeout:g} s for {zone} earlier in this run"
                log.warning("%s: not waiting for this server again in this run", exc)
            return Fetched(source, zone, error=str(exc))
        except SourceError as exc:
            return Fetched(source, zone, error=str(exc))
        if server is not None:
            server.answered = True
        return Fetched(source, zone, raw=raw)
