"""Zone names as ods-duo accepts them: one normal form (lowercase, no trailing dot) used by the
controller, the protocol fields and the zone file checker alike."""

from __future__ import annotations

import re

from duo_ods.errors import ZoneFileError

# Zone names become file and directory names on the nodes, so only plain hostname-like labels
# (underscore allowed for service zones, no "/" as in some RFC 2317 names).
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_NAME_TEXT = 253


def normalize_zone_name(name: str) -> str:
    """Return the zone name lowercase without its trailing dot; raise ZoneFileError if it is not one."""
    if name == ".":
        return "."
    lowered = name.lower()
    if lowered.endswith("."):
        lowered = lowered[:-1]
    if not lowered:
        raise ZoneFileError(f"invalid zone name {name!r}: empty.")
    if len(lowered) > _MAX_NAME_TEXT:
        raise ZoneFileError(f"invalid zone name {name!r}: longer than {_MAX_NAME_TEXT} characters.")
    for label in lowered.split("."):
        if not _LABEL_RE.fullmatch(label):
            raise ZoneFileError(
                f"invalid zone name {name!r}: label {label!r} is not 1-63 letters, digits, '-' or '_'."
            )
    return lowered
