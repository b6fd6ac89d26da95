"""The exporter: refreshes on an interval, serves the last refresh on every scrape.

A scrape never reaches a node: it renders what the refresh thread last gathered (a scrape of
1,000 zones costs milliseconds; see bench/results/metrics.md). The refresh runs `check` on every
zone, so its interval should be longer than a check of all zones takes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from duo_ods.metrics.families import families
from duo_ods.metrics.observation import Observation
from duo_ods.metrics.optimes import OpTimes
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)


class LastRefresh(Collector):
    """Hands out the families of the last refresh (swapped in whole, so a scrape never sees half)."""

    def __init__(self) -> None:
        self._families: list[Metric] = []

    def update(self, obs: Observation) -> None:
        self._families = families(obs)

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


class Exporter:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.last = LastRefresh()
        self.registry.register(self.last)
        self.op_times = OpTimes(self.registry)

    def refresh(self, gather: Callable[[], Observation]) -> Observation:
        obs = gather()
        self.last.update(obs)
        log.info("metrics refreshed in %.1f s (%d zones, %d errors)", obs.duration, len(obs.reports),
                 len(obs.errors))  # fmt: skip
        return obs

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: Path) -> None:
        """For node_exporter's textfile collector: whole files only (it reads *.prom)."""
        write_atomic(path, self.text().decode())

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def run(self, gather: Callable[[], Observation], interval: float, stop: threading.Event,
            textfile: Path | None = None) -> None:  # fmt: skip
        """Refresh, then wait out the rest of the interval, until `stop`."""
        while not stop.is_set():
            started = time.monotonic()
            self.refresh(gather)
            if textfile is not None:
                self.write_textfile(textfile)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
