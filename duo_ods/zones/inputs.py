"""The controller's record of each zone's newest good input: what a node that missed it catches up to.

Every controller path that hands a zone's data to nodes (`zone add`, `zone update`, the watcher's
adds and updates, `zone catch-up`, `backup restore`) records the checked text here FIRST, then
tells the nodes. So a node that was down, hung or unreachable when the data changed can be given
it later (duo_ods.zones.catchup), and `backup restore` knows something newer than its snapshot.

One 0640 JSON file per zone in the backup store's `state/inputs/` folder: the checked text, its
sha256 (the same digest a node reports for its signer's input file), the input's own SOA serial,
and when it was recorded. Writes are atomic (temp + rename): a reader sees the old or the new
record, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone

from duo_ods.config.resolve import Duo, zone_file_name
from duo_ods.errors import DuoError
from duo_ods.render.engine import write_atomic
from duo_ods.zones.validate import CheckedZone

log = logging.getLogger(__name__)


class InputRecordError(DuoError):
    """The newest-input record cannot be written or read."""


@dataclass(frozen=True)
class InputRecord:
    zone: str
    digest: str  # sha256 of `text`, as a node reports its signer's input file
    serial: int  # the input's own SOA serial
    at: float  # when it was recorded (before any node was told)
    text: str


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def inputs_dir(duo: Duo) -> Path:
    return duo.backup_dir / "state" / "inputs"


def _path(duo: Duo, zone: str) -> Path:
    return inputs_dir(duo) / f"{zone_file_name(zone)}.json"


def record_input(duo: Duo, checked: CheckedZone, now: float | None = None) -> InputRecord:
    """Keep `checked` as the zone's newest good input. Call it before telling any node."""
    record = InputRecord(
        checked.name, text_digest(checked.text), checked.serial, time.time() if now is None else now,
        checked.text,
    )  # fmt: skip
    path = _path(duo, checked.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        write_atomic(path, json.dumps(asdict(record)) + "\n", mode=0o640)
    except OSError as exc:
        raise InputRecordError(
            f"zone {checked.name}: cannot record its newest input in {path}: {exc.strerror}; no node was told"
        ) from None
    log.debug("zone %s: newest input recorded (serial %d, %s)", checked.name, checked.serial, record.digest)
    return record


def record_inputs(duo: Duo, checked: Iterable[CheckedZone]) -> list[InputRecord]:
    """Several zones at once (the watcher's batch adds): call before the batch goes to a node."""
    return [record_input(duo, c) for c in checked]


def latest_input(duo: Duo, zone: str) -> InputRecord | None:
    """The zone's newest recorded input, or None (never recorded, or removed)."""
    path = _path(duo, zone)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputRecordError(f"zone {zone}: unreadable newest-input record {path}: {exc}") from None
    record = InputRecord(**data)
    if text_digest(record.text) != record.digest:
        raise InputRecordError(f"zone {zone}: newest-input record {path} does not match its digest")
    return record


def recorded_zones(duo: Duo) -> list[str]:
    folder = inputs_dir(duo)
    if not folder.is_dir():
        return []
    return sorted("." if p.stem == "root" else p.stem for p in folder.glob("*.json"))


def forget_input(duo: Duo, zone: str) -> None:
    """The zone is gone from every node (zone remove): nothing to catch up to any more."""
    _path(duo, zone).unlink(missing_ok=True)


def record_text(duo: Duo, zone: str, text: str) -> InputRecord:
    """Record text that a node signed already (checked when it first came in), e.g. the input a
    restore chose from a peer or a snapshot."""
    origin = dns.name.root if zone == "." else dns.name.from_text(zone)
    parsed = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    soa = parsed.get_rdataset(origin, dns.rdatatype.SOA)
    serial = int(soa[0].serial) if soa is not None else 0
    records = sum(len(rdataset) for _name, rdataset in parsed.iterate_rdatasets())
    return record_input(duo, CheckedZone(zone, text, serial, records, 0))


# --- which input is the newest: the record, a live peer's, a snapshot's ---------------------------


@dataclass(frozen=True)
class Candidate:
    source: str  # "record", "peer NODE", "snapshot"
    text: str
    at: float | None  # when it was written (record: recorded; peer: its file's mtime; snapshot: taken)


def newest_input(
    record: Candidate | None, peer: Candidate | None, snapshot: Candidate | None, slack: float = 2.0
) -> Candidate | None:
    """The newest of the inputs available for a zone. Pure.

    The record is written before any node is told by every ods-duo path, so it is at least as new
    as any input a node got from ods-duo: it wins over a snapshot (a node's input, copied later)
    always, and over a live peer's input unless that file was written after the record (by
    something that does not record, e.g. a watcher with a backup folder of its own). The snapshot
    is used only for what nothing newer has.
    """
    if record is not None and peer is not None:
        if text_digest(peer.text) == text_digest(record.text):
            return record
        if peer.at is not None and record.at is not None and peer.at > record.at + slack:
            return peer
        return record
    return record or peer or snapshot
