"""Time per node operation: a histogram the typed client fills through its observer hook
(protocol.client.Observer), for the operations the exporter itself runs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

# From a quick local status (tens of ms) to a slow ssh round trip or a hung node's timeout.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OpTimes:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.histogram = Histogram(
            "ods_duo_node_operation_duration_seconds",
            "Round trip of a node operation through the typed client, by target and operation",
            ["target", "operation", "outcome"],
            buckets=BUCKETS,
            registry=registry,
        )

    def observe(self, target: str, operation: str, seconds: float, ok: bool) -> None:
        self.histogram.labels(target, operation, "ok" if ok else "error").observe(seconds)
