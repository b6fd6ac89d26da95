"""Kill points for `key create`, `key rollover`, `kek init --replace` and `backup restore`, and
what must hold after recovery (the crash test and bench/crash_sweep.py).

A kill point is an ODS_DUO_FAULT value (duo_ods/faults.py): the controller SIGKILLed right after
its Nth journal record, or a node's operation SIGKILLed before or after its handler ran. After
`ods-duo key resume`, the duo must be consistent: no enforcer uses a key that the other node's
HSM or the backup lacks, no HSM holds an orphan (a key in no enforcer, no pool and no bundle),
no zone has keys on one node only, and `backup verify` passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.rdatatype

from duo_ods.config.load import load_config
from duo_ods.dns.tsig import transfer_key
from duo_ods.keys.journal import journal_path
from duo_ods.ods.kaspdb import is_dead
from duo_ods.process import python_module
from tests.support.disk import remove_tree
from tests.support.dnssec import axfr

# key create of one zone (a KSK+ZSK pair, or any batch of zones) writes 4 journal records: begin;
# hsm origin (every key of the batch); hsm peer and bundle (the copies and the backup, made at
# once); commit.
JOURNAL_RECORDS = 4
NODE_OPS = (
    "key-generate-batch", "key-wrap-batch", "key-unwrap-batch", "bundle-put-batch", "key-seal-batch",
    "key-import-batch", "enforce",
)  # fmt: skip
KEY_CREATE_POINTS = [f"journal:{n}" for n in range(1, JOURNAL_RECORDS + 1)] + [
    f"op:{op}:{when}" for op in NODE_OPS for when in ("before", "after")
]
# key rollover of one ZSK: begin; hsm origin, hsm peer, bundle; pool a, pool b; commit.
ROLLOVER_JOURNAL_RECORDS = 7
ROLLOVER_OPS = ("key-generate", "key-unwrap", "bundle-put", "key-seal", "key-pool-add", "key-rollover")
KEY_ROLLOVER_POINTS = [f"journal:{n}" for n in range(1, ROLLOVER_JOURNAL_RECORDS + 1)] + [
    f"op:{op}:{when}" for op in ROLLOVER_OPS for when in ("before", "after")
]

# kek init --replace on two nodes: begin; commit (before the backup makes the new KEK); per node:
# send, and the SO pin of its transport key.
KEK_REPLACE_JOURNAL_RECORDS = 6
KEK_OPS = ("kek-generate", "kek-transport-key", "kek-pin", "kek-wrap-for", "kek-unwrap", "kek-unpin")
KEK_REPLACE_POINTS = [f"journal:{n}" for n in range(1, KEK_REPLACE_JOURNAL_RECORDS + 1)] + [
    f"op:{op}:{when}" for op in KEK_OPS for when in ("before", "after")
]


def restore_journal_records(keys: int) -> int:
    """Journal records of `backup restore` of a node whose zones have `keys` live keys in all: begin;
    init and token; KEK copy; one per key unwrapped; zones; one per key import; key states."""
    return 5 + 2 * keys


RESTORE_OPS = (
    "init", "kek-unwrap", "key-unwrap", "start", "policy-import", "zone-add-batch", "key-import", "stop",
    "key-states-write", "enforce",
)  # fmt: skip


def restore_points(keys: int) -> list[str]:
    """Every kill point of `backup restore` (node ops: the restored node's agent)."""
    return [f"journal:{n}" for n in range(1, restore_journal_records(keys) + 1)] + [
        f"op:{name}:{when}" for name in RESTORE_OPS for when in ("before", "after")
    ]


ZONE_TEXT = """$ORIGIN {zone}.
$TTL 300
@ IN SOA ns1 hostmaster 2026112901 3600 600 864000 300
@ IN NS ns1
ns1 IN A 192.0.2.53
www IN A 192.0.2.80
"""


def run(
    config: str, *args: str, fault: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ODS_DUO_FAULT"}
    if fault:
        env["ODS_DUO_FAULT"] = fault
    return subprocess.run(
        [*python_module("duo_ods"), "--config", config, *args],
        capture_output=True, text=True, timeout=timeout, check=False, env=env,
    )  # fmt: skip


def op(config: str, target: str, name: str) -> dict[str, Any]:
    proc = run(config, "node", "op", name, "--node", target)
    reply: dict[str, Any] = json.loads(proc.stdout)
    assert reply["ok"], reply
    result: dict[str, Any] = reply["result"]
    return result


@dataclass
class Outcome:
    point: str
    killed_exit: int
    resume: str
    keys: int  # keys of the zone in the enforcers after recovery
    problems: list[str]


def consistency(config: str, nodes: list[str]) -> list[str]:
    """What is wrong with the duo's keys, HSMs and backup (empty: consistent)."""
    problems = []
    bundles = {b["locator"] for b in op(config, "backup", "bundle-list")["bundles"]}
    used: dict[str, set[str]] = {}
    for node in nodes:
        used[node] = {k["locator"] for z in op(config, node, "key-states")["zones"] for k in z["keys"]}
        pool = set(op(config, node, "db-schema")["pool"])
        hsm = {k["locator"] for k in op(config, node, "hsm-list")["keys"] if k["object_class"] == "private"}
        if orphans := hsm - used[node] - pool - bundles:
            problems.append(f"node {node}: orphan keys in the HSM: {sorted(orphans)}")
        if missing := used[node] - hsm:
            problems.append(f"node {node}: the enforcer uses keys its HSM lacks: {sorted(missing)}")
        if unbacked := used[node] - bundles:
            problems.append(f"node {node}: keys without a backup bundle: {sorted(unbacked)}")
    first, *rest = nodes
    for node in rest:
        if used[node] != used[first]:
            problems.append(
                f"nodes {first} and {node} use different keys: {sorted(used[first] ^ used[node])}"
            )
    verify = run(config, "backup", "verify")
    if verify.returncode != 0:
        problems.append(f"backup verify: {verify.stdout.strip()} {verify.stderr.strip()}")
    return problems


def key_create_at(config: str, nodes: list[str], zone: str, point: str) -> Outcome:
    """key create killed at `point`, then key resume; what holds afterwards."""
    killed = run(config, "key", "create", zone, fault=point)
    resumed = run(config, "key", "resume")
    if resumed.returncode != 0:
        return Outcome(
            point, killed.returncode, resumed.stderr.strip(), -1, [f"key resume failed: {resumed.stderr}"]
        )
    problems = consistency(config, nodes)
    keys = {
        k["locator"]
        for z in op(config, nodes[0], "key-states")["zones"]
        if z["zone"] == zone
        for k in z["keys"]
    }
    if not keys:  # undone: a new key create must now work from a clean slate
        again = run(config, "key", "create", zone)
        if again.returncode != 0:
            problems.append(f"key create after the undo failed: {again.stderr.strip()}")
        problems += consistency(config, nodes)
    elif len(keys) != 2:
        problems.append(f"zone {zone} has {len(keys)} keys after recovery, not a KSK and a ZSK")
    return Outcome(point, killed.returncode, resumed.stdout.strip(), len(keys), problems)


def zone_keys(config: str, node: str, zone: str) -> set[str]:
    return {
        k["locator"] for z in op(config, node, "key-states")["zones"] if z["zone"] == zone for k in z["keys"]
    }


def key_rollover_at(config: str, nodes: list[str], zone: str, point: str) -> Outcome:
    """A ZSK rollover of a zone with keys, killed at `point`, then key resume; what holds afterwards:
    consistent, and the zone has its two keys (undone) or three (the successor rolled in everywhere)."""
    killed = run(config, "key", "rollover", zone, "--role", "zsk", fault=point)
    resumed = run(config, "key", "resume")
    if resumed.returncode != 0:
        return Outcome(
            point, killed.returncode, resumed.stderr.strip(), -1, [f"key resume failed: {resumed.stderr}"]
        )
    problems = consistency(config, nodes)
    keys = {n: zone_keys(config, n, zone) for n in nodes}
    if len({frozenset(k) for k in keys.values()}) != 1:
        problems.append(f"the nodes have different keys for {zone}: {keys}")
    count = len(keys[nodes[0]])
    if count not in (2, 3):
        problems.append(f"zone {zone} has {count} keys after recovery, not 2 (undone) or 3 (rolled)")
    for node in nodes:
        if pool := op(config, node, "db-schema")["pool"]:
            problems.append(f"node {node}: keys left in the spare-key pool: {pool}")
    return Outcome(point, killed.returncode, resumed.stdout.strip(), count, problems)


def live_keys(config: str, node: str) -> int:
    """Live keys of every zone of a node: what a restore from it unwraps and imports."""
    return sum(1 for z in op(config, node, "key-states")["zones"] for k in z["keys"] if not is_dead(k))


def wipe(config: str, node: str) -> None:
    """The node dies and its disk is lost: daemons stopped (by pid), its whole folder gone."""
    proc = run(config, "node", "stop", node)
    assert proc.returncode == 0, proc.stderr
    remove_tree(load_config(Path(config)).node(node).paths.base)


def dnskeys(address: str, port: int, zone: str, key: Any) -> set[str] | None:
    """The zone's DNSKEY RRset by AXFR (None: not served, or not signed yet)."""
    try:
        z = axfr(address, port, zone, key)
    except (dns.exception.DNSException, OSError):
        return None
    keys = z.get_rdataset(z.origin, dns.rdatatype.DNSKEY)
    sigs = z.get_rdataset(z.origin, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    return {rd.to_text() for rd in keys} if keys is not None and sigs is not None else None


def same_dnskeys(config: str, node: str, peer: str, timeout: float = 90) -> tuple[int, list[str]]:
    """Every zone with keys on the peer is served by `node` with the peer's DNSKEY RRset (AXFR from
    both); (zones compared, problems)."""
    duo = load_config(Path(config))
    key = transfer_key(duo)
    zones = sorted(z["zone"] for z in op(config, peer, "key-states")["zones"] if z["keys"])
    problems = []
    for zone in zones:
        deadline = time.monotonic() + timeout
        while True:
            mine = dnskeys(duo.node(node).address, duo.node(node).port, zone, key)
            theirs = dnskeys(duo.node(peer).address, duo.node(peer).port, zone, key)
            if mine is not None and mine == theirs:
                break
            if time.monotonic() > deadline:
                problems.append(f"zone {zone}: node {node} serves DNSKEYs {mine}, node {peer} {theirs}")
                break
            time.sleep(1)
    return len(zones), problems


def restore_at(
    config: str, nodes: list[str], node: str, point: str, recover: Literal["restore", "resume"]
) -> Outcome:
    """`node` wiped, its `backup restore` killed at `point`, then recovered by running the restore
    again or by `key resume`; what holds afterwards: the node serves every zone with its peer's
    DNSKEYs, no HSM holds an orphan, `backup verify` passes. Outcome.keys: zones compared."""
    peer = next(n for n in nodes if n != node)
    wipe(config, node)
    killed = run(config, "backup", "restore", "--node", node, fault=point)
    if recover == "restore":
        recovered = run(config, "backup", "restore", "--node", node)
    else:
        recovered = run(config, "key", "resume")
    said = (recovered.stdout + recovered.stderr).strip()
    journal = journal_path(load_config(Path(config)))
    if "finished the interrupted backup restore" in said and recovered.returncode == 0:
        finished = next(line for line in said.splitlines() if "finished the interrupted" in line)
    elif not journal.exists() and (
        f"node {node} runs" in said or "nothing to resume" in said
    ):  # the key origin's watcher resumes a pending journal on its own (every RESUME_INTERVAL)
        finished = "finished the interrupted backup restore (by the key origin's watcher)"
    else:
        return Outcome(point, killed.returncode, said, -1, [f"{recover} after the kill failed: {said}"])
    compared, problems = same_dnskeys(config, node, peer)
    problems += consistency(config, nodes)
    return Outcome(point, killed.returncode, finished, compared, problems)


def kek_problems(config: str, nodes: list[str]) -> list[str]:
    """What is incoherent in the tokens' KEKs: not one KEK everywhere, a retired KEK on a node (only a
    restore hands one over, and drops it), a transport key or an SO pin left over from a hand-over."""
    problems = []
    status = {t: op(config, t, "kek-status") for t in [*nodes, "backup"]}
    if len({s["fingerprint"] for s in status.values()}) != 1 or None in {
        s["fingerprint"] for s in status.values()
    }:
        problems.append(f"not one KEK everywhere: { {t: s['fingerprint'] for t, s in status.items()} }")
    for node in nodes:
        if status[node]["retired"]:
            problems.append(f"node {node} keeps retired KEKs {status[node]['retired']}")
    for target in [*nodes, "backup"]:
        left = [
            f"{o['role']} {o['label']}"
            for o in op(config, target, "hsm-custody")["objects"]
            if o["role"] in ("transport", "trusted-transport")
        ]
        if left:
            problems.append(f"{target}: left over from a KEK hand-over: {left}")
    return problems


def kek_replace_at(config: str, nodes: list[str], zone: str, point: str) -> Outcome:
    """`kek init --replace` killed at `point`, then key resume; what holds afterwards: one KEK in every
    token (the old one when undone, a new one when finished), nothing left of the hand-overs, the
    backup keeps the replaced KEK (so every bundle verifies), no orphan, and `key create` works.
    Outcome.keys: 1 when a new KEK is everywhere, 0 when the old one stayed."""
    old = op(config, "backup", "kek-status")["fingerprint"]
    killed = run(config, "kek", "init", "--replace", fault=point)
    resumed = run(config, "key", "resume")
    if resumed.returncode != 0:
        return Outcome(
            point, killed.returncode, resumed.stderr.strip(), -1, [f"key resume failed: {resumed.stderr}"]
        )
    said = resumed.stdout.strip()
    problems = kek_problems(config, nodes)
    new = op(config, "backup", "kek-status")
    changed = new["fingerprint"] != old
    if changed and old not in new["retired"]:
        problems.append(f"the backup did not keep the replaced KEK {old}: retired {new['retired']}")
    # "undid the unfinished ...": the old KEK stays. "nothing to resume": the key origin's watcher
    # finished (or undid) it first (it looks every RESUME_INTERVAL); the state checks below still hold.
    if "nothing to resume" in said:
        said = "finished (or undone) by the key origin's watcher"
    elif changed == ("undid" in said):
        problems.append(f"KEK {'replaced' if changed else 'kept'}, but key resume said: {said}")
    problems += consistency(config, nodes)
    made = run(config, "key", "create", zone)
    if made.returncode != 0:
        problems.append(f"key create after the recovery failed: {made.stderr.strip()}")
    problems += consistency(config, nodes)
    return Outcome(point, killed.returncode, said, int(changed), problems)
