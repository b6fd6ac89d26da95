"""The controller's one way to run a node operation: typed requests in, typed replies out.

A transport carries JSON (a local subprocess, ssh); this client turns the declared request
into that JSON and the reply back into its declared type, so a reply that does not match
is an error naming the node and the operation, not a KeyError three calls later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from duo_ods.errors import DuoError, TransportError
from duo_ods.protocol.ops import Empty, Op, Rep, Req
from duo_ods.transport.base import Transport

log = logging.getLogger(__name__)


class StepError(DuoError):
    """A named step of a flow failed on one target; the message says which."""


class PartlyDone(StepError):
    """A step run on several targets at once failed on some of them."""

    def __init__(self, message: str, done: list[str], failed: list[str]) -> None:
        super().__init__(message)
        self.done = done
        self.failed = failed


def describe(exc: ValidationError) -> str:
    """pydantic's findings in one line: field path and reason."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()[:5]
    )


# Told of every operation's round trip: (target, op name, seconds, succeeded). The metrics
# exporter's histogram of node operation times is one (duo_ods.metrics.optimes).
Observer = Callable[[str, str, float, bool], None]


class NodeClient:
    def __init__(self, transport: Transport, observers: Iterable[Observer] = ()) -> None:
        self.transport = transport
        self.observers = list(observers)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, target: str, op: Op[Req, Rep], request: Req | None = None, timeout: float | None = None
    ) -> Rep:
        if not op.runs_on(target):
            raise ValueError(f"operation {op.name} does not run on {target}")
        if request is None:
            request = op.request()
        if not isinstance(request, op.request):
            raise TypeError(f"{op.name} takes {op.request.__name__}, not {type(request).__name__}")
        started = time.monotonic()
        ok = False
        try:
            result = self.transport.call(target, op.name, request.model_dump(mode="json"), timeout)
            ok = True
        finally:
            for observe in self.observers:
                observe(target, op.name, time.monotonic() - started, ok)
        try:
            return op.reply.model_validate(result)
        except ValidationError as exc:
            raise TransportError(f"node {target}: {op.name}: malformed reply: {describe(exc)}") from None

    def step(
        self,
        name: str,
        target: str,
        op: Op[Req, Rep],
        request: Req | None = None,
        *,
        error: type[DuoError] = StepError,
        prefix: str = "step",
    ) -> Rep:
        """One step of a flow: its failure is an `error` that names the step and the target."""
        try:
            return self.call(target, op, request)
        except DuoError as exc:
            raise error(f"{prefix} {name} on {target}: {exc}") from exc

    def on_each(
        self, targets: Iterable[str], name: str, op: Op[Req, Rep], request: Req | None = None
    ) -> dict[str, Rep]:
        """One step on every target at once (threads): the enforcers act within the same second.

        ODS stamps state changes with the time a command runs: nodes told seconds apart stay
        that far apart through a whole rollover. Raises PartlyDone once every target answered.
        """
        targets = list(targets)
        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            futures = {t: pool.submit(self.call, t, op, request) for t in targets}
        results: dict[str, Rep] = {}
        failed: dict[str, str] = {}
        for target, future in futures.items():
            try:
                results[target] = future.result()
            except DuoError as exc:
                failed[target] = str(exc)
        if failed:
            done = f"; done on {', '.join(results)}" if results else ""
            message = f"step {name}: " + "; ".join(f"{t}: {e}" for t, e in failed.items()) + done
            raise PartlyDone(message, list(results), list(failed))
        return results


__all__ = ["Empty", "NodeClient", "Observer", "PartlyDone", "StepError"]
