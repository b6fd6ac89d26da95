"""NOTIFY from the controller to the secondaries, signed with the transfer key.

Why not only the signers' own NOTIFY: ods-signerd 2.1.12 was seen sending, after
an update, a NOTIFY with the previous serial (a retry of an unanswered one), which
BIND answers with "zone is up to date" and then waits for its refresh timer. Once
every node serves the new serial, one NOTIFY from here makes the secondaries look.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype

from duo_ods.dns.tsig import TsigKey


def send_notify(address: str, port: int, zone: str, key: TsigKey | None, timeout: float = 2.0) -> str | None:
    """NOTIFY one secondary; None when it acknowledged, else why not."""
    message = dns.message.make_query(zone, dns.rdatatype.SOA)
    message.set_opcode(dns.opcode.NOTIFY)
    message.flags |= dns.flags.AA
    message.flags &= ~dns.flags.RD
    if key is not None:
        message.use_tsig(key.keyring(), key.name)
    try:
        reply = dns.query.udp(message, address, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return f"no answer from {address} port {port}: {exc or type(exc).__name__}"
    if reply.rcode() != 0:
        return f"{address} port {port} answered {dns.rcode.to_text(reply.rcode())}"
    return None
