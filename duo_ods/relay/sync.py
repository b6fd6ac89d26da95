"""On a signer node: bring its transfer relay and its catalog up to date with the zones its signer
serves (the `relay-sync` operation; the watcher runs it every few seconds, lab up once).

Two steps per zone, each on a later call than the one before, so that a secondary is never told of a
zone that is not there for it: the relay carries a zone once the signer answers for it (it serves only
signed zones), and the catalog lists it once the relay answers for it. A zone leaves both when it leaves
the node. The catalog's serial moves forward whenever its members change.
"""

from __future__ import annotations

import fcntl
import grp
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from duo_ods import process
from duo_ods.bind.relay import relay_files, render_relay_conf, render_relay_zones
from duo_ods.bind.render import check_named_conf
from duo_ods.config.resolve import Duo, Node, zone_file_name
from duo_ods.dns.query import soa_serial
from duo_ods.dns.tsig import read_tsig_key
from duo_ods.relay.catalog import catalog_name, catalog_text, next_serial
from duo_ods.render.engine import write_atomic

log = logging.getLogger(__name__)

# New zones asked about per call: a thousand dropped zones must not hold the watcher for minutes.
MAX_NEW_PER_SYNC = 200
PROBE_TIMEOUT = 0.5


@dataclass
class RelayState:
    zones: list[str] = field(default_factory=list)  # the relay carries them
    members: list[str] = field(default_factory=list)  # the catalog lists them
    catalog: str = ""
    serial: int | None = None


@dataclass(frozen=True)
class SyncResult:
    zones: list[str]
    members: list[str]
    catalog: str
    serial: int | None
    changed: bool
    reloaded: bool


def load_state(path: Path) -> RelayState:
    try:
        return RelayState(**json.loads(path.read_text()))
    except FileNotFoundError:
        return RelayState()


def relay_pid(node: Node) -> int | None:
    """The running relay: the lab's pid record, else named's own pid file (a relay a service runs)."""
    files = relay_files(node)
    record = process.running(files["record"])
    if record is not None:
        return record.pid
    try:
        pid = int(files["pid"].read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "named" else None


def copy_transfer_key(duo: Duo, node: Node) -> bool:
    """The relay's copy of the transfer key, readable by group bind (0640): named drops to user bind,
    while the duo's own key file stays root's alone (0600) in a root-only folder. True when written."""
    path = relay_files(node)["key"]
    text = duo.tsig_key_path.read_text()
    if _same(path, text):
        return False
    write_atomic(path, text, mode=0o640)  # group root until the chown: never readable by more
    try:
        os.chown(path, -1, grp.getgrnam("bind").gr_gid)
    except KeyError:  # no bind group (named runs as root here): the copy stays root's
        path.chmod(0o600)
    return True


def write_relay_config(duo: Duo, node: Node, catalog: str, zones: list[str]) -> bool:
    """Render the relay's named.conf and zone list, check them with named-checkconf as named would read
    them, then put them in place; False when nothing changed."""
    files = relay_files(node)
    key_changed = copy_transfer_key(duo, node)
    (node.relay_dir / "zones").mkdir(parents=True, exist_ok=True)
    conf_text = render_relay_conf(duo, node)
    zones_text = render_relay_zones(node, catalog, zones)
    if _same(files["conf"], conf_text) and _same(files["zones"], zones_text):
        return key_changed
    if not files["catalog"].exists():  # named refuses to load a primary zone without its file
        write_atomic(files["catalog"], catalog_text(catalog, next_serial(None), []))
    new_zones = files["zones"].with_name("zones.conf.new")
    write_atomic(new_zones, zones_text)
    candidate = files["conf"].with_name("named.conf.new")
    write_atomic(candidate, conf_text.replace(f'include "{files["zones"]}";', f'include "{new_zones}";'))
    check_named_conf(candidate)
    candidate.unlink()
    os.replace(new_zones, files["zones"])
    write_atomic(files["conf"], conf_text)
    return True


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except FileNotFoundError:
        return False


def _drop_old_copy(node: Node, zone: str) -> None:
    """A zone the relay is about to carry again: remove the copy its named saved when it carried it
    before (zones/ZONE.db and its journal). named would load that file at once and keep it: a signer
    that starts a returning zone afresh may sign it at a serial no higher than the old copy's, and
    the relay would then never transfer the new version. The zone is not in named's configuration
    now, so named is not writing the file."""
    base = node.relay_dir / "zones" / f"{zone_file_name(zone)}.db"
    for path in (base, base.with_name(base.name + ".jnl")):
        if path.exists():
            path.unlink(missing_ok=True)
            log.info("node %s: relay copy %s of the returning zone %s removed", node.name, path, zone)


@contextmanager
def _one_sync_at_a_time(node: Node) -> Iterator[None]:
    """The relay's sync lock (flock on relay/sync.lock). The watcher's relay ticker and a command's
    `relay_sync_all` (key create, zone add) may sync the same relay at once: both write the same
    candidate files (seen: "named.conf.new: file not found"), and both read the state and the
    catalog serial, so one could write a new member list under the other's serial."""
    node.relay_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(node.relay_dir / "sync.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def sync_relay(duo: Duo, node: Node, node_zones: list[str]) -> SyncResult:
    with _one_sync_at_a_time(node):
        return _sync_relay(duo, node, node_zones)


def _sync_relay(duo: Duo, node: Node, node_zones: list[str]) -> SyncResult:
    files = relay_files(node)
    state = load_state(files["state"])
    key = read_tsig_key(duo.tsig_key_path)
    wanted = set(node_zones)
    carried = set(state.zones) & wanted
    for zone in sorted(wanted - carried)[:MAX_NEW_PER_SYNC]:
        # Asked only once the signer has written its output (ZONE.axfr in its working directory): a
        # zone being signed for the first time is not queried, so the probes add nothing to that
        # moment of the signer's work (an ods-signerd 2.1.12 died once there in test_catalog, cause
        # not known). Then the signer's listener answers us, with the key.
        outputs = {f"{zone}.axfr", f"{zone_file_name(zone)}.axfr"}  # the root zone: either spelling
        if not any((node.paths.signer_dir / name).exists() for name in outputs):
            continue
        asked = time.monotonic()
        if soa_serial(node.address, node.port, zone, key, timeout=PROBE_TIMEOUT) is not None:
            carried.add(zone)
        elif time.monotonic() - asked >= PROBE_TIMEOUT:
            break  # no answer in time: a hung signer; the watcher must not wait on it zone by zone
    for zone in carried - set(state.zones):
        _drop_old_copy(node, zone)
    members = set(state.members) & carried
    if relay_pid(node) is not None:
        for zone in sorted(carried - members)[:MAX_NEW_PER_SYNC]:
            if soa_serial(node.relay_address, node.relay_port, zone, timeout=PROBE_TIMEOUT) is not None:
                members.add(zone)
    catalog = catalog_name(duo, node.name)
    changed = write_relay_config(duo, node, catalog, sorted(carried))
    serial = state.serial
    if members != set(state.members) or catalog != state.catalog or not files["catalog"].exists():
        serial = next_serial(state.serial)
        write_atomic(files["catalog"], catalog_text(catalog, serial, sorted(members)))
        log.info("node %s: catalog %s serial %d, %d members", node.name, catalog, serial, len(members))
        changed = True
    new = RelayState(sorted(carried), sorted(members), catalog, serial)
    write_atomic(files["state"], json.dumps(asdict(new)))
    reloaded = False
    if changed and (pid := relay_pid(node)) is not None:
        os.kill(pid, signal.SIGHUP)  # named reloads its config and every changed zone file
        reloaded = True
    return SyncResult(new.zones, new.members, catalog, serial, changed, reloaded)
