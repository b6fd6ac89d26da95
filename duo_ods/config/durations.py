"""ISO 8601 durations as OpenDNSSEC reads them, in seconds.

ODS counts a year as 365 days and a month as 31 days (libhsm/enforcer duration.c);
we do the same so that arithmetic on config values (propagation delay + skew
margin) matches what the enforcer will compute.
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_UNITS = {"y": 365 * 86400, "mo": 31 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "mi": 60, "s": 1}


def parse_duration(text: str) -> int:
    """'PT1H30M' -> 5400. Raises ValueError for anything that is not an ISO 8601 duration."""
    match = _DURATION.match(text.strip().upper())
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT1H or P14D")
    return sum(int(v) * _UNITS[k] for k, v in match.groupdict().items() if v)


def format_duration(seconds: int) -> str:
    """Seconds as the unambiguous form ODS accepts everywhere: 'PT5400S'."""
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return f"PT{seconds}S"
