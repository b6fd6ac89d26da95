"""Reaching a node: the Transport interface and its implementations."""

from __future__ import annotations

from duo_ods.config.resolve import Duo
from duo_ods.transport.base import Transport
from duo_ods.transport.local import LocalTransport

__all__ = ["LocalTransport", "Transport", "transport_for"]


def transport_for(duo: Duo, verbose: bool = False) -> Transport:
    """The transport the config asks for (all nodes are local until the ssh transport lands)."""
    return LocalTransport(duo.config_path, verbose=verbose)
