"""Asking a signer or secondary for the SOA serial it serves (signed with the transfer key when given)."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from duo_ods.dns.tsig import TsigKey


def soa_serial(
    address: str, port: int, zone: str, key: TsigKey | None = None, timeout: float = 2.0
) -> int | None:
    """The serial served for the zone, or None (not loaded or signed yet, refused, or no answer in time).

    The signers' listener refuses SOA queries without the transfer key; secondaries answer anyone.
    """
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    if key is not None:
        query.use_tsig(key.keyring(), key.name)
    try:
        reply = dns.query.udp(query, address, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    soa = [rr for rrset in reply.answer for rr in rrset if rr.rdtype == dns.rdatatype.SOA]
    return int(soa[0].serial) if soa else None
