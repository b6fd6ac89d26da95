"""The lab's parent (`lab up --parent`): a BIND primary for `test.`, the parent of the lab's zones.

It holds the lab's DS records, signs `test.` itself (BIND's dnssec-policy, one CSK) and accepts DS
changes by RFC 2136 UPDATE signed with its own TSIG key (a 0600 key statement, never in argv), so the
rollover scheduler has a real parent to push to and to check. `lab status --json` names its address
and a trust-anchor file (its CSK's DNSKEY) for a validating resolver anchored at the parent.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from duo_ods import process
from duo_ods.bind.render import check_named_conf
from duo_ods.config.resolve import Duo
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.errors import LabError
from duo_ods.keys.listing import ds_for_zone
from duo_ods.lab.net import check_free
from duo_ods.lab.secondaries import add_address, signed_zones
from duo_ods.parent.config import parent_zone_of
from duo_ods.protocol.client import NodeClient
from duo_ods.render.engine import write_atomic

ZONE = "test"
KEY_NAME = "lab-parent-update"
START_TIMEOUT = 30.0


def directory(lab_dir: Path) -> Path:
    return lab_dir / "parent"


def _files(lab_dir: Path) -> dict[str, Path]:
    d = directory(lab_dir)
    return {
        "plan": d / "parent.json", "conf": d / "named.conf", "zone": d / "test.db", "key": d / "update.key",
        "keys": d / "keys", "record": d / "named.json", "stderr": d / "named.stderr", "log": d / "named.log",
        "anchor": d / "anchor.key",
    }  # fmt: skip


def plan(lab_dir: Path, address: str, port: int) -> str:
    """At config time: note where the parent runs (lab/net.py: address_plan); returns the [parents]
    block for the lab's duo.toml."""
    files = _files(lab_dir)
    files["plan"].parent.mkdir(parents=True, exist_ok=True)
    write_atomic(files["plan"], json.dumps({"zone": ZONE, "address": address, "port": port}) + "\n")
    return (
        "\n# The lab's parent (lab up --parent): the rollover scheduler pushes and checks DS here.\n"
        '[parents."*"]\n'
        f'agents = ["{address}:{port}"]\n'
        f'update_server = "{address}:{port}"\n'
        'tsig_key_file = "parent/update.key"\n'
    )


def wanted(lab_dir: Path) -> bool:
    return _files(lab_dir)["plan"].exists()


def _where(lab_dir: Path) -> tuple[str, int]:
    data = json.loads(_files(lab_dir)["plan"].read_text(encoding="utf-8"))
    return str(data["address"]), int(data["port"])


def _zone_text(address: str, delegations: dict[str, tuple[str, list[str]]]) -> str:
    lines = [
        "$TTL 60",
        f"{ZONE}. IN SOA ns.{ZONE}. hostmaster.{ZONE}. ( 1 60 30 86400 60 )",
        f"{ZONE}. IN NS ns.{ZONE}.",
        f"ns.{ZONE}. IN A {address}",
    ]
    for child, (ns_address, ds_lines) in sorted(delegations.items()):
        lines += [f"{child}. IN NS ns1.{child}.", f"ns1.{child}. IN A {ns_address}"]
        lines += [line.replace(" IN DS ", " 60 IN DS ") for line in ds_lines]
    return "\n".join(lines) + "\n"


def _named_conf(lab_dir: Path, address: str, port: int) -> str:
    files = _files(lab_dir)
    d = directory(lab_dir)
    return f"""// Rendered by ods-duo: the lab's parent zone {ZONE}. (lab up --parent).
options {{
	directory "{d}";
	pid-file "{d}/named.pid";
	session-keyfile "{d}/session.key";
	managed-keys-directory "{d}";
	key-directory "{files["keys"]}";
	listen-on port {port} {{ {address}; }};
	listen-on-v6 {{ none; }};
	recursion no;
	dnssec-validation no;
	notify no;
}};
controls {{ }};
logging {{
	channel parent_log {{ file "{files["log"]}"; print-time yes; print-category yes; severity info; }};
	category default {{ parent_log; }};
	category update {{ parent_log; }};
	category dnssec {{ parent_log; }};
}};
dnssec-policy "lab-parent" {{
	keys {{ csk lifetime unlimited algorithm 13; }};
	dnskey-ttl 60;
	max-zone-ttl 60;
	zone-propagation-delay 1;
	publish-safety 1;
	retire-safety 1;
	signatures-refresh 5d;
	signatures-validity 14d;
	signatures-validity-dnskey 14d;
}};
include "{files["key"]}";
zone "{ZONE}" {{
	type primary;
	file "{files["zone"]}";
	dnssec-policy "lab-parent";
	allow-update {{ key "{KEY_NAME}"; }};
}};
"""


def _signed_keys(address: str, port: int) -> list[str]:
    """The parent's SEP DNSKEYs, once `test.` answers signed (None yet: [])."""
    query = dns.message.make_query(f"{ZONE}.", dns.rdatatype.DNSKEY, want_dnssec=True)
    try:
        reply = dns.query.tcp(query, address, port=port, timeout=2)
    except (dns.exception.DNSException, OSError):
        return []
    keys = [rr for rrset in reply.answer if rrset.rdtype == dns.rdatatype.DNSKEY for rr in rrset]
    signed = any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in reply.answer)
    return [f"{ZONE}. IN DNSKEY {k.to_text()}" for k in keys if k.flags & 1] if signed else []


def start(lab_dir: Path, delegations: dict[str, tuple[str, list[str]]], ledger: Path) -> str:
    """Start the parent (once): `delegations` child -> (its name server's address, its DS lines)."""
    files = _files(lab_dir)
    address, port = _where(lab_dir)
    running = process.running(files["record"])
    if running is not None:
        return f"parent {ZONE}. (named pid {running.pid}) on {address} port {port}"
    check_free(address, port, f"parent {ZONE}.")
    add_address(address, ledger)
    files["keys"].mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_tsig_key(files["key"], KEY_NAME, "hmac-sha256")
    if not files["zone"].exists():  # a dynamic zone: named keeps it (and its journal) from here
        write_atomic(files["zone"], _zone_text(address, delegations))
    candidate = files["conf"].with_suffix(".new")
    write_atomic(candidate, _named_conf(lab_dir, address, port))
    check_named_conf(candidate)
    candidate.replace(files["conf"])
    try:
        record = process.spawn(f"named parent {ZONE}", ["named", "-f", "-c", str(files["conf"])],
                               files["stderr"], files["record"], cwd=directory(lab_dir))  # fmt: skip
    except OSError as exc:
        raise LabError(f"parent {ZONE}.: {exc}") from None
    deadline = time.monotonic() + START_TIMEOUT
    while not (anchors := _signed_keys(address, port)):
        if not process.is_alive(record):
            raise LabError(f"parent {ZONE}.: named died at start: {process.tail(files['stderr'])}")
        if time.monotonic() > deadline:
            raise LabError(f"parent {ZONE}.: not signed within {START_TIMEOUT:.0f} s; see {files['log']}")
        time.sleep(0.2)
    write_atomic(files["anchor"], "\n".join(anchors) + "\n")
    return f"parent {ZONE}. (named pid {record.pid}) on {address} port {port}, trust anchor {files['anchor']}"


def stop(lab_dir: Path) -> str | None:
    record = _files(lab_dir)["record"]
    return process.stop(record) if record.exists() else None


def status(lab_dir: Path) -> dict[str, Any] | None:
    if not wanted(lab_dir):
        return None
    files = _files(lab_dir)
    address, port = _where(lab_dir)
    running = process.running(files["record"])
    return {
        "zone": ZONE, "address": address, "port": port, "pid": running.pid if running else None,
        "trust_anchor": str(files["anchor"]), "tsig_key_file": str(files["key"]), "log": str(files["log"]),
    }  # fmt: skip


def start_for(duo: Duo, client: NodeClient, lab_dir: Path, ledger: Path) -> list[str]:
    """`lab up`: the parent, when the lab was made with --parent, delegating the lab's zones under
    `test.` to the lab's first secondary with the DS each has now."""
    if not wanted(lab_dir):
        return []
    first = (
        duo.config.secondaries[0].address
        if duo.config.secondaries
        else next(iter(duo.nodes.values())).address
    )
    children = {
        z: (first, ds_for_zone(duo, client, z).ds)
        for z in signed_zones(duo, client)
        if parent_zone_of(z) == ZONE
    }
    return [start(lab_dir, children, ledger)]
