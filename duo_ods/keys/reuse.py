"""A zone that comes back after removal gets its old keys again (its DS may still be at the parent).

`zone remove` (and a watcher removing a zone whose file was deleted) first records the zone's live
keys with their enforcer state in the backup store (`state/removed-keys/ZONE.json`). When the zone
is added again and keys are due (`zone add` of a zone with such a record, `key create`, the key
origin's watcher), and the removal is within `[backup] retention` and the backup still holds every
one of those keys' bundles (`backup prune` removes them only after that retention), the keys are
put back the way `backup restore` puts keys into a node: unwrapped from the bundles into every
node's HSM (idempotent: without <Purge> they are still there), `key import` into every enforcer,
then the enforcer state as it was at removal, then `enforce`.

Which state: the one recorded at removal, not a fresh introduction. The DS the parent has points
at the old KSK, and validators may still cache the old DNSKEY RRset: the zone must come back with
that same RRset, signed by the same keys, at once. Imported as new (`--keystate generate`) the
enforcer would introduce them again: the KSK's DS "unsubmitted" (it would wait for a DS the parent
has already, and `check --ds` would warn), the DNSKEYs rumoured, and the zone unsigned until the
propagation timers ran out. With the recorded state (DS seen, DNSKEY and signatures omnipresent, a
rollover that was under way with its dependencies) the enforcer carries on where it stopped. If the
parent's DS was removed meanwhile the enforcer cannot know: `check --ds` shows it.

Outside the retention (or a bundle already pruned), or with `zone add --new-keys`, the record is
dropped and new keys are made, and this is said in one line: the DS changes.

Workaround for ODS 2.1.12: `zone delete` keeps the key's hsmKey row (state DELETE), and `key
import` refuses that CKA_ID for good ("Already used this key with this locator"); the node drops
that row first (duo_ods.ods.kaspdb.release_stale).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from duo_ods.backup.report import bundles as held_bundles
from duo_ods.config.durations import parse_duration
from duo_ods.config.resolve import Duo, zone_file_name
from duo_ods.errors import DuoError
from duo_ods.keys.bundle import KeyBundle
from duo_ods.keys.flow import (
    CreatedKey,
    KeyFlowError,
    create_key,
    finish_pending,
    import_request,
    preflight,
    step,
    unwrap_request,
)
from duo_ods.keys.journal import key_lock
from duo_ods.protocol import ops as P
from duo_ods.protocol.client import NodeClient
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)

IMPORT_SETTLE = 1.5  # seconds: a zone just added gets the enforcer's first pass before key import

Outcome = Literal["reused", "expired", "declined"]


@dataclass(frozen=True)
class RemovedKeys:
    """A removed zone's live keys and their enforcer state, as they were just before removal."""

    zone: str
    removed: float
    node: str  # whose enforcer state was recorded
    states: P.ZoneStateMsg

    def names(self) -> str:
        return ", ".join(f"{k.role} {k.keytag}" for k in self.states.keys)


@dataclass
class Reuse:
    """What became of a returning zone's keys."""

    zone: str
    outcome: Outcome
    message: str
    keys: list[CreatedKey] = field(default_factory=list)  # reused ones; new ones added by the caller

    def to_json(self) -> dict[str, object]:
        return {
            "zone": self.zone, "outcome": self.outcome, "message": self.message,
            "keys": [k.__dict__ for k in self.keys],
        }  # fmt: skip


# --- the record of a removed zone's keys ----------------------------------------------------


def record_path(duo: Duo, zone: str) -> Path:
    return duo.backup_dir / "state" / "removed-keys" / f"{zone_file_name(zone)}.json"


def load_removed(duo: Duo, zone: str) -> RemovedKeys | None:
    path = record_path(duo, zone)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeyFlowError(
            f"zone {zone}: unreadable record of its keys before removal {path}: {exc}"
        ) from None
    return RemovedKeys(
        zone=data["zone"], removed=float(data["removed"]), node=data["node"],
        states=P.ZoneStateMsg.model_validate(data["states"]),
    )  # fmt: skip


def forget_removed(duo: Duo, zone: str) -> None:
    record_path(duo, zone).unlink(missing_ok=True)


def remember_keys(
    duo: Duo, client: NodeClient, zone: str, nodes: list[str] | None = None
) -> RemovedKeys | None:
    """Before a zone is removed: record its live keys with their enforcer state, from the first of
    `nodes` (default: every node) that has the zone. None when it has no live keys there.

    Never raises: a removal goes on without the record (the zone then gets new keys when it comes
    back, and says so); the reason is logged.
    """
    for node in nodes or list(duo.nodes):
        try:
            reply = client.call(node, P.KEY_STATES, P.KeyStatesRequest(zone=zone))
        except DuoError as exc:
            log.warning("zone %s: no key states from node %s before removal: %s", zone, node, exc)
            continue
        state = next((z for z in reply.zones if z.zone == zone), None)
        if state is None:
            continue
        live = state.live()
        if not live.keys:
            return None
        record = RemovedKeys(zone, time.time(), node, live)
        path = record_path(duo, zone)
        text = json.dumps(
            {"zone": zone, "removed": record.removed, "node": node, "states": live.model_dump(mode="json")}
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, text + "\n", mode=0o600)
        except OSError as exc:
            log.error("zone %s: cannot record its keys before removal in %s: %s", zone, path, exc.strerror)
            return None
        log.info("zone %s: its keys (%s) are recorded for its return", zone, record.names())
        return record
    return None


# --- putting them back ------------------------------------------------------------------------


def _why_not(duo: Duo, record: RemovedKeys, held: dict[str, KeyBundle], kek: str, now: float) -> str | None:
    """Why the recorded keys cannot be reused, or None when they can. Pure."""
    retention = parse_duration(duo.config.backup.retention)
    if now - record.removed > retention:
        ago = _age(now - record.removed)
        return f"removed {ago} ago, past the backup's retention ({duo.config.backup.retention})"
    missing = [f"{k.role} {k.keytag}" for k in record.states.keys if k.locator not in held]
    if missing:
        return f"the backup no longer holds the bundle of {', '.join(missing)}"
    other = [f"{k.role} {k.keytag}" for k in record.states.keys if held[k.locator].kek != kek]
    if other:
        return f"the bundle of {', '.join(other)} is wrapped under a KEK the nodes no longer have"
    return None


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m {s % 60}s"


def new_keys_line(zone: str, record: RemovedKeys, why: str) -> str:
    return (
        f"zone {zone}: NEW keys, so the DS changes: its keys from before removal ({record.names()}) "
        f"are not reused ({why})"
    )


def reuse_removed(duo: Duo, client: NodeClient, zone: str, *, new_keys: bool = False) -> Reuse | None:
    """Under the key lock: give a returning zone its keys from before removal, when it can.

    None: no record (a zone never removed with keys) or the zone has other live keys already.
    Otherwise the record is used up: "reused" (the keys are in every HSM and enforcer with their
    recorded state), or "expired"/"declined" (the caller makes new keys; the message says the DS
    changes). Idempotent: a run killed half way is finished by the next one (the record stays
    until the keys are back).
    """
    record = load_removed(duo, zone)
    if record is None:
        return None
    ours = {k.locator for k in record.states.keys}
    for node in duo.nodes:
        states = step("preflight", node, client, P.KEY_STATES, P.KeyStatesRequest(zone=zone))
        keys = states.keys_of(zone) or []
        if any(not k.dead and k.locator not in ours for k in keys):
            log.info("zone %s: has keys of its own already; its keys from before removal are not used", zone)
            forget_removed(duo, zone)
            return None
    if new_keys:
        forget_removed(duo, zone)
        return _said(Reuse(zone, "declined", new_keys_line(zone, record, "--new-keys")))
    kek = preflight(duo, client, zone)
    held = {b.locator: b for b in held_bundles(client)}
    why = _why_not(duo, record, held, kek, time.time())
    if why is not None:
        forget_removed(duo, zone)
        return _said(Reuse(zone, "expired", new_keys_line(zone, record, why)))
    bundles = [held[k.locator] for k in record.states.keys]
    time.sleep(IMPORT_SETTLE)  # the enforcer's first pass over the new zone (see backup.restore)

    def put_back(node: str) -> None:
        for bundle in bundles:
            step("reuse", node, client, P.KEY_UNWRAP, unwrap_request(bundle))
        for bundle, key in zip(bundles, record.states.keys, strict=True):
            step("import", node, client, P.KEY_IMPORT, import_request(bundle, zone, key.role, key.inception))
        # The state at removal, so the zone comes back as it left (see the module's doc).
        step("states", node, client, P.KEY_STATES_ADOPT, P.KeyStatesWriteRequest(zones=[record.states]))
        step("enforce", node, client, P.ENFORCE)

    # Every node at once: each stops its enforcer for the state write, and they are independent.
    with ThreadPoolExecutor(max_workers=len(duo.nodes)) as pool:
        for done in [pool.submit(put_back, node) for node in duo.nodes]:
            done.result()
    forget_removed(duo, zone)
    created = [
        CreatedKey(zone, k.role, k.locator, k.keytag, b.origin, k.inception, list(duo.nodes))
        for b, k in zip(bundles, record.states.keys, strict=True)
    ]
    message = (
        f"zone {zone}: its keys from before removal are back ({record.names()}), removed "
        f"{_age(time.time() - record.removed)} ago: the DS stays the same"
    )
    return _said(Reuse(zone, "reused", message, created))


def _said(reuse: Reuse) -> Reuse:
    log.warning("%s", reuse.message)
    return reuse


def returning_zone_keys(duo: Duo, client: NodeClient, zone: str, *, new_keys: bool = False) -> Reuse | None:
    """`zone add` of a zone that had keys when it was removed: its old keys back, else new ones
    (the zone had keys: it is signed again either way). None: no such record, nothing done."""
    if load_removed(duo, zone) is None:
        return None
    with key_lock(duo, f"zone add {zone}"):
        finish_pending(duo, client)
        reuse = reuse_removed(duo, client, zone, new_keys=new_keys)
    if reuse is None or reuse.outcome == "reused":
        return reuse
    reuse.keys = create_key(duo, client, zone, None, None)
    return reuse
