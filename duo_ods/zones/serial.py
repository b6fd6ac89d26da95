"""SOA serials across the duo: the next serial that is above every node's, in the policy's scheme.

Each signer counts its own serial, and re-signing moves them apart. A secondary
only transfers a serial higher than the one it holds, so after an update both
nodes must publish a serial above anything either has served: otherwise the
secondary keeps stale data when it fails over to the node that is behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

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
