"""Enforcer state drift: where the nodes' enforcers disagree about a zone's keys.

Pure: takes each node's key states (as read from its database, so a stopped enforcer still
has a view) and says what differs. The two enforcers get every command within the same
second, so their states should match, and their state changes should be stamped at most the
policy's skew margin apart; an enforcer that was down catches up on restart but stamps its
changes later by its downtime, which is reported as a lag.
"""

from __future__ import annotations

from typing import Any

Views = dict[str, list[dict[str, Any]]]  # node -> KeyStates.to_json() of one zone's keys


def _label(key: dict[str, Any]) -> str:
    return f"{key['role']} {key['keytag']}"


def state_drift(views: Views, margin: float) -> list[str]:
    """One sentence per disagreement; empty when the nodes agree (within `margin` seconds)."""
    nodes = list(views)
    by_locator: dict[str, dict[str, dict[str, Any]]] = {}
    for node, keys in views.items():
        for key in keys:
            by_locator.setdefault(key["locator"], {})[node] = key
    found: list[str] = []
    for copies in by_locator.values():
        label = _label(next(iter(copies.values())))
        missing = [n for n in nodes if n not in copies]
        if missing:
            found.append(f"{label}: not in the enforcer of {', '.join(missing)}")
            continue
        states = {n: {r["type"]: r["state"] for r in k["records"]} for n, k in copies.items()}
        ds = {n: k["flags"]["dsAtParent"] for n, k in copies.items()}
        differs = [
            t + " " + ", ".join(f"{states[n].get(t)} on {n}" for n in nodes)
            for t in sorted({t for s in states.values() for t in s})
            if len({states[n].get(t) for n in nodes}) > 1
        ]
        if len(set(ds.values())) > 1:
            differs.append("dsAtParent " + ", ".join(f"{ds[n]} on {n}" for n in nodes))
        if differs:
            found.append(f"{label}: " + "; ".join(differs))
            continue
        changes = {n: {r["type"]: r["last_change"] for r in k["records"]} for n, k in copies.items()}
        lags = []
        for record_type in sorted(changes[nodes[0]]):
            stamps = {n: changes[n][record_type] for n in nodes}
            if max(stamps.values()) - min(stamps.values()) > margin:
                late = max(stamps, key=lambda n: stamps[n])
                early = min(stamps, key=lambda n: stamps[n])
                lags.append(f"{record_type} changed on {late} {stamps[late] - stamps[early]} s after {early}")
        if lags:
            found.append(
                f"{label}: same states, but " + "; ".join(lags) + f" (beyond the {margin:.0f} s margin)"
            )
    return found
