"""What every parental agent serves as a zone's DS set, and whether that is enough to mark a DS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
from dns.rdtypes.ANY.DS import DS

AgentView = frozenset[str] | str  # the DS records it serves (ds_key), or why it did not answer


def ds_key(ds: DS) -> str:
    """A DS as compared here: key tag, algorithm, digest type, digest (TTL and case do not count)."""
    return f"{ds.key_tag} {ds.algorithm} {ds.digest_type} {ds.digest.hex()}"


def agent_name(agent: tuple[str, int]) -> str:
    host, port = agent
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def query_ds(agent: tuple[str, int], zone: str, timeout: float = 3.0) -> AgentView:
    """The DS set the agent serves for the zone (empty when it has none), or why there is no answer.

    RD is set so that a validating resolver may be an agent too; an authoritative parent ignores it.
    """
    host, port = agent
    query = dns.message.make_query(dns.name.from_text(zone), dns.rdatatype.DS, want_dnssec=True)
    query.flags |= dns.flags.RD
    try:
        reply = dns.query.udp(query, host, port=port, timeout=timeout)
        if reply.flags & dns.flags.TC:
            reply = dns.query.tcp(query, host, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError) as exc:
        return f"no answer ({type(exc).__name__}: {exc})"
    if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return f"answers {dns.rcode.to_text(reply.rcode())}"
    return frozenset(
        ds_key(rr) for rrset in reply.answer if rrset.rdtype == dns.rdatatype.DS for rr in rrset
        if isinstance(rr, DS)
    )  # fmt: skip


def ask_all(agents: Iterable[tuple[str, int]], zone: str) -> dict[str, AgentView]:
    return {agent_name(a): query_ds(a, zone) for a in agents}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: list[str]


def all_serve(views: Mapping[str, AgentView], wanted: str) -> Verdict:
    """Every agent answers and serves the DS `wanted` (nothing is marked seen that one does not)."""
    problems = []
    for agent, view in sorted(views.items()):
        if isinstance(view, str):
            problems.append(f"parental agent {agent}: {view}")
        elif wanted not in view:
            tag = wanted.split(maxsplit=1)[0]
            served = sorted(
                f"{v.split()[0]}{' with another digest' if v.split()[0] == tag else ''}" for v in view
            )
            problems.append(
                f"parental agent {agent} does not serve DS {tag} (serves {', '.join(served) or 'no DS'})"
            )
    return Verdict(not problems and bool(views), problems)


def none_serve(views: Mapping[str, AgentView], gone: str) -> Verdict:
    """Every agent answers and none serves the DS `gone` any more."""
    problems = []
    for agent, view in sorted(views.items()):
        if isinstance(view, str):
            problems.append(f"parental agent {agent}: {view}")
        elif gone in view:
            problems.append(f"parental agent {agent} still serves DS {gone.split(maxsplit=1)[0]}")
    return Verdict(not problems and bool(views), problems)


def mismatches(views: Mapping[str, AgentView], expected: Iterable[str]) -> list[str]:
    """Agents whose DS set is not `key ds`'s (for `check`): one line each."""
    want = frozenset(expected)
    problems = []
    for agent, view in sorted(views.items()):
        if isinstance(view, str):
            problems.append(f"parental agent {agent}: {view}")
        elif view != want:
            extra = sorted(v.split()[0] for v in view - want)
            lacking = sorted(v.split()[0] for v in want - view)
            problems.append(
                f"parental agent {agent}: DS set differs from `key ds`"
                + (f"; lacks key tag {', '.join(lacking)}" if lacking else "")
                + (f"; serves unknown key tag {', '.join(extra)}" if extra else "")
            )
    return problems
