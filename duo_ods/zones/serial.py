"""SOA serials across the duo: the next serial that is above every node's, in the policy's scheme.

Each signer counts its own serial, and re-signing moves them apart. A secondary
only transfers a serial higher than the one it holds, so after an update both
nodes must publish a serial above anything either has served: otherwise the
secondary keeps stale data when it fails over to the node that is behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SERIAL_MAX = 2**32


def next_serial(served: Iterable[int], scheme: str, now: float | None = None) -> int:
    """One above the highest served serial, and at least what the scheme says for now.

    datecounter: YYYYMMDD00 of today (UTC); unixtime: the current time; counter: no floor.
    """
    now = time.time() if now is None else now
    highest = max(served, default=0)
    floor = 0
    if scheme == "datecounter":
        floor = int(time.strftime("%Y%m%d", time.gmtime(now))) * 100
    elif scheme == "unixtime":
        floor = int(now)
    return max(highest + 1, floor) % SERIAL_MAX


@dataclass(frozen=True)
class Seen:
    """One copy of a zone somewhere (a signer or a secondary): its serial, and whether it carries the
    newest content (True), older content (False), or nobody knows (None: not fetched)."""

    serial: int
    current: bool | None


def catch_up_serial(
    copies: Mapping[str, Seen], own: Seen | None, scheme: str, now: float | None = None
) -> int | None:
    """The serial for a node that has (or is about to sign) the newest content; None: keep its own.

    The rule it keeps: two copies with the same serial carry the same content, and no copy with
    older content outranks the newest. `copies` are the other signers' and the secondaries'; `own`
    is what the node serves now (old content, or already the new one at a serial its signer picked
    itself after a restart). The serial takes the content into account, not only the numbers:

    - the node already serves the newest content at or above every other serial: nothing to do;
    - every copy at the highest serial anywhere is known to carry the newest content, and the node
      is below it (a signer's own serial only grows, so it never served that serial): the node
      joins that serial, since whoever holds it has the same content already;
    - otherwise (a stale copy on top, or one whose content is unknown): one above every serial
      anywhere, so every secondary takes the newest content from this node.
    """
    serials = [c.serial for c in copies.values()]
    top = max(serials, default=None)
    newest_on_top = top is not None and all(c.current is True for c in copies.values() if c.serial == top)
    own_newest = own is not None and own.current is True
    if (
        own is not None
        and own_newest
        and (top is None or own.serial > top or (own.serial == top and newest_on_top))
    ):
        return None
    if top is not None and newest_on_top and (own is None or own.serial < top):
        return top
    if own is not None:
        serials.append(own.serial)
    return next_serial(serials, scheme, now)


def days_ahead(serial: int, scheme: str, now: float | None = None) -> int:
    """datecounter only: how many days a serial runs ahead of today's date (0: within today's 100).

    YYYYMMDDNN leaves 100 serials a day. A duo that levels and catches up often can use more; the
    next serial then carries tomorrow's date (RFC 1982 arithmetic does not care, ODS counts on from
    it), and the nodes stay ahead of the calendar until the date passes them. Worth a warning.
    """
    if scheme != "datecounter":
        return 0
    now = time.time() if now is None else now
    today = int(time.strftime("%Y%m%d", time.gmtime(now)))
    day = serial // 100
    if day <= today:
        return 0
    try:
        ahead = time.mktime(time.strptime(str(day), "%Y%m%d")) - time.mktime(
            time.strptime(str(today), "%Y%m%d")
        )
    except ValueError:
        return 1
    return max(1, round(ahead / 86400))


def with_serial_floor(text: str, zone: str, floor: int) -> str:
    """The zone text with its apex SOA serial raised to `floor` when it is lower.

    A workaround for ODS 2.1.12: a signer that starts a zone afresh (a restored node) signs its
    first version at one above the input's own SOA serial (datecounter: "unable to use datecounter
    as serial"), before ods-duo can ask for a serial with `sign --serial`; that first version
    could repeat a serial the other signer served with other content. With the input's serial
    just below a serial nobody served yet, the first version is already above every copy.
    The text is a checked zone text: its SOA record is on one line, owner first.
    """
    owner = "." if zone == "." else f"{zone}."
    lines = text.split("\n")
    for i, line in enumerate(lines):
        words = line.split()
        if len(words) >= 11 and words[0].lower() == owner and words[2:4] == ["IN", "SOA"]:
            if int(words[6]) < floor:
                words[6] = str(floor % SERIAL_MAX)
                lines[i] = " ".join(words)
            return "\n".join(lines)
    raise ValueError(f"zone {zone}: no SOA record at the apex of its text")
