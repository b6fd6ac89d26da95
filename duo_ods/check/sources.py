"""Getting copies of a zone: AXFR from a signer or secondary, or a saved zone file."""

from __future__ import annotations

from pathlib import Path

import dns.exception
import dns.name
import dns.query
import dns.zone

from duo_ods.bind.tsig import TsigKey
from duo_ods.check.model import Source

AXFR_TIMEOUT = 30.0


def fetch_axfr(  # noqa: PLR0917
    name: str, address: str, port: int, zone: str, tsig: TsigKey | None = None, timeout: float = AXFR_TIMEOUT
) -> Source:
    """AXFR the zone (signed with the duo's transfer key when given); a source that is down or
    refuses becomes a Source with an error."""
    origin = dns.name.from_text(zone)
    keyring = tsig.keyring() if tsig else None
    keyname = tsig.name if tsig else None
    try:
        messages = dns.query.xfr(
            address, origin, port=port, lifetime=timeout, relativize=False, keyring=keyring, keyname=keyname
        )
        return Source(name, zone=dns.zone.from_xfr(messages, relativize=False))
    except (dns.exception.DNSException, OSError, EOFError) as exc:
        return Source(
            name, error=f"no AXFR of {zone} from {address} port {port}: {exc or type(exc).__name__}"
        )


def load_file(path: Path, zone: str, name: str | None = None) -> Source:
    """A saved copy; it is called by its file name unless given a name."""
    name = name or path.name
    try:
        return Source(name, zone=dns.zone.from_file(str(path), origin=zone, relativize=False))
    except (dns.exception.DNSException, OSError) as exc:
        return Source(name, error=f"cannot read {path} as zone {zone}: {exc}")


def parse_source(spec: str) -> tuple[str, int] | Path:
    """'ADDR:PORT' (or '[v6]:PORT') for a live server, anything else is a file."""
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and host and not Path(spec).exists():
        return host.strip("[]"), int(port)
    return Path(spec)
