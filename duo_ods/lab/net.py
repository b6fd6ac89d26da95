"""Loopback addresses and ports for the lab."""

from __future__ import annotations

import errno
import socket

from duo_ods.errors import LabError


def check_free(address: str, port: int, what: str) -> None:
    """Refuse early, with a clear message, when something already holds address:port."""
    for kind, name in ((socket.SOCK_DGRAM, "udp"), (socket.SOCK_STREAM, "tcp")):
        with socket.socket(socket.AF_INET, kind) as sock:
            # As servers do: connections in TIME_WAIT (a recent AXFR) must not count as "in use".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise LabError(f"{what}: {address} port {port}/{name} is not available ({reason})") from None
