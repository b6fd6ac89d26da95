"""The exporter: checks and refreshes on intervals, serves the last refresh on every scrape.

A scrape never reaches a node: it sends the page of the last refresh (a scrape of 1,000 zones costs
milliseconds; see bench/results/metrics.md). The check of every zone runs on a thread of its own
every check interval (it should be longer than a check of all zones takes); the cheap refresh (the
daemons, the watchers) every interval, so a dead signer shows soon whatever the number of zones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from duo_ods.metrics.families import checked_families, refresh_families
from duo_ods.metrics.observation import Checked, Observation
from duo_ods.metrics.optimes import OpTimes
from duo_ods.pacing import next_due
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)


class Families(Collector):
    """Hands out the families it was given."""

    def __init__(self, found: list[Metric]) -> None:
        self.families = found

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def render(found: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(found))
    return generate_latest(registry)


class Exporter:
    """Each part of the page is rendered once, when it changes (1,000 zones are 24,000 samples,
    about a second to render on a busy machine): the check's part once per check, the daemons' and
    watchers' part once per refresh. A scrape sends both plus the node operation times."""

    def __init__(self) -> None:
        self._checked: tuple[object, bytes] = (None, b"")  # (the check it is from, its page)
        self._rendered = b""
        self.registry = CollectorRegistry(auto_describe=False)  # what changes between refreshes
        self.op_times = OpTimes(self.registry)
        self.checked: Checked | None = None  # the last check, once one finished
        self._stop = threading.Event()
        self._wake = threading.Event()

    def refresh(self, gather: Callable[[], Observation]) -> Observation:
        obs = gather()
        check = (obs.checked_at, id(obs.reports))
        if self._checked[0] != check:
            self._checked = (check, render(checked_families(obs)))
        self._rendered = self._checked[1] + render(refresh_families(obs))  # swapped in whole
        log.info("metrics refreshed in %.1f s (%d zones, %d errors)", obs.duration, len(obs.reports),
                 len(obs.errors))  # fmt: skip
        return obs

    def text(self) -> bytes:
        return self._rendered + generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """For node_exporter's textfile collector: whole files only (it reads *.prom)."""
        write_atomic(path, self.text().decode())

    def serve(self, address: str, port: int) -> ThreadingHTTPServer:
        """GET /metrics (any path) on a thread of its own."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Scrapes are not logged."""

        server = ThreadingHTTPServer((address, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server

    def run(
        self, refresh: Callable[[Checked | None], Observation], check: Callable[[], Checked],
        interval: float, check_interval: float, textfile: Path | None = None,
    ) -> None:  # fmt: skip
        """The check on a thread of its own every `check_interval`; a refresh every `interval` and
        at once after each check; until stop()."""
        checker = threading.Thread(target=self._checks, args=(check, check_interval), name="metrics-check",
                                   daemon=True)  # fmt: skip
        checker.start()
        while not self._stop.is_set():
            started = time.monotonic()
            self._wake.clear()
            self.refresh(partial(refresh, self.checked))
            if textfile is not None:
                self.write_textfile(textfile)
            self._wake.wait(max(0.0, interval - (time.monotonic() - started)))
        checker.join(timeout=1)

    def _checks(self, check: Callable[[], Checked], interval: float) -> None:
        """Every `interval`, or further apart when a check takes more than a tenth of it (many zones:
        duo_ods.pacing), so the exporter never validates back to back."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.checked = check()
            now = time.monotonic()
            due = next_due(started, now - started, interval)
            log.info("metrics: checked %d zones in %.1f s (%d errors); next check in %.0f s",
                     len(self.checked.reports), self.checked.duration, len(self.checked.errors),
                     due - now)  # fmt: skip
            self._wake.set()
            self._stop.wait(max(0.0, due - now))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
