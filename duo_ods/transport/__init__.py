"""Reaching a node: the Transport interface and its implementations."""

from __future__ import annotations

from duo_ods.config.resolve import Duo
from duo_ods.transport.base import Transport
from duo_ods.transport.local import LocalTransport
from duo_ods.transport.ssh import RoutingTransport, SshTransport

__all__ = ["LocalTransport", "RoutingTransport", "SshTransport", "Transport", "transport_for"]


def transport_for(duo: Duo, verbose: bool = False) -> Transport:
    """What the config asks for: each node local or over ssh; the backup store always local."""
    local = LocalTransport(duo.config_path, verbose=verbose)
    remote: dict[str, Transport] = {
        name: SshTransport(node.ssh) for name, node in duo.nodes.items() if node.ssh is not None
    }
    return RoutingTransport(local, remote) if remote else local
