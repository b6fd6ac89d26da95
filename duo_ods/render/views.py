"""Small computed objects the templates render: nothing raw from the config reaches a template."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from duo_ods.config.durations import format_duration, parse_duration
from duo_ods.config.model import PolicyConfig
from duo_ods.config.resolve import Node

# The repository name each node's conf.xml gives its token; `key import
# --repository` names it, so it is the same on every node.
REPOSITORY = "duo"


def _d(value: str) -> str:
    return format_duration(parse_duration(value))


@dataclass(frozen=True)
class ConfView:
    node: str
    repository: str
    module: str
    token_label: str
    pin: str
    verbosity: int
    kasp_xml: str
    zonelist_xml: str
    kasp_db: str
    enforcer_dir: str
    enforcer_threads: int
    signer_dir: str
    worker_threads: int
    signer_threads: int
    address: str
    port: int


def conf_view(node: Node, pin: str, verbosity: int = 3) -> ConfView:
    p = node.paths
    return ConfView(
        node=node.name,
        repository=REPOSITORY,
        module=node.config.hsm_module,
        token_label=node.config.token_label,
        pin=pin,
        verbosity=verbosity,
        kasp_xml=str(p.kasp_xml),
        zonelist_xml=str(p.zonelist_xml),
        kasp_db=str(p.kasp_db),
        enforcer_dir=str(p.enforcer_dir),
        enforcer_threads=2,
        signer_dir=str(p.signer_dir),
        worker_threads=node.config.worker_threads,
        signer_threads=node.config.signer_threads,
        address=node.address,
        port=node.port,
    )


@dataclass(frozen=True)
class KeyView:
    role: str  # KSK, ZSK or CSK
    lifetime: str


@dataclass(frozen=True)
class KaspView:
    name: str
    description: str
    repository: str
    algorithm: int
    bits: int
    keys: list[KeyView]
    resign: str
    refresh: str
    validity_default: str
    validity_denial: str
    validity_keyset: str | None
    jitter: str
    inception_offset: str
    max_zone_ttl: str
    nsec3: bool
    nsec3param_ttl: str
    nsec3_opt_out: bool
    nsec3_resalt: str
    nsec3_iterations: int
    nsec3_salt_length: int
    dnskey_ttl: str
    retire_safety: str
    publish_safety: str
    zone_propagation_delay: str
    soa_ttl: str
    soa_minimum: str
    serial: str
    parent_propagation_delay: str
    ds_ttl: str
    parent_soa_ttl: str
    parent_soa_minimum: str
    parent_registration_delay: str


def kasp_view(policy: PolicyConfig) -> KaspView:
    if policy.keys == "csk":
        keys = [KeyView("CSK", _d(policy.csk_lifetime))]
    else:
        keys = [KeyView("KSK", _d(policy.ksk_lifetime)), KeyView("ZSK", _d(policy.zsk_lifetime))]
    assert policy.bits is not None  # filled in by PolicyConfig's validator
    return KaspView(
        name=policy.name,
        description=policy.description,
        repository=REPOSITORY,
        algorithm=policy.algorithm,
        bits=policy.bits,
        keys=keys,
        resign=_d(policy.resign),
        refresh=_d(policy.refresh),
        validity_default=_d(policy.validity_default),
        validity_denial=_d(policy.validity_denial),
        validity_keyset=_d(policy.validity_keyset) if policy.validity_keyset else None,
        jitter=_d(policy.jitter),
        inception_offset=_d(policy.inception_offset),
        max_zone_ttl=_d(policy.max_zone_ttl),
        nsec3=policy.nsec3,
        nsec3param_ttl=_d(policy.nsec3param_ttl),
        nsec3_opt_out=policy.nsec3_opt_out,
        nsec3_resalt=_d(policy.nsec3_resalt),
        nsec3_iterations=policy.nsec3_iterations,
        nsec3_salt_length=policy.nsec3_salt_length,
        dnskey_ttl=_d(policy.dnskey_ttl),
        retire_safety=_d(policy.retire_safety),
        publish_safety=_d(policy.publish_safety),
        zone_propagation_delay=format_duration(
            parse_duration(policy.zone_propagation_delay) + parse_duration(policy.skew_margin)
        ),
        soa_ttl=_d(policy.soa_ttl),
        soa_minimum=_d(policy.soa_minimum),
        serial=policy.serial,
        parent_propagation_delay=_d(policy.parent_propagation_delay),
        ds_ttl=_d(policy.ds_ttl),
        parent_soa_ttl=_d(policy.parent_soa_ttl),
        parent_soa_minimum=_d(policy.parent_soa_minimum),
        parent_registration_delay=_d(policy.parent_registration_delay),
    )


@dataclass(frozen=True)
class ZoneEntry:
    name: str
    policy: str
    signconf: str
    input: str
    output: str


@dataclass(frozen=True)
class ZonelistView:
    node: str
    zones: list[ZoneEntry]


def zonelist_view(node: Node, policy: str, zones: list[str]) -> ZonelistView:
    p = node.paths
    entries = [
        ZoneEntry(
            name=zone,
            policy=policy,
            signconf=str(p.signconf(zone)),
            input=str(p.unsigned_zone(zone)),
            output=str(p.addns_xml),
        )
        for zone in sorted(zones)
    ]
    return ZonelistView(node=node.name, zones=entries)


@dataclass(frozen=True)
class TsigView:
    name: str
    algorithm: str
    secret: str


@dataclass(frozen=True)
class PeerView:
    prefix: str
    key: str | None = None


@dataclass(frozen=True)
class RemoteView:
    address: str
    port: int
    key: str | None = None


@dataclass(frozen=True)
class AddnsView:
    node: str
    tsig_keys: list[TsigView] = field(default_factory=list)
    transfer_peers: list[PeerView] = field(default_factory=list)
    notify: list[RemoteView] = field(default_factory=list)


def _host_prefix(address: str) -> str:
    return f"{address}/{ipaddress.ip_address(address).max_prefixlen}"


def addns_view(node: Node, allow: list[str], tsig: TsigView) -> AddnsView:
    """Transfers only to the node's own relay (by address: ods-signerd 2.1.12 signs a multi-message
    AXFR in a way BIND rejects, so the relay cannot use the key) and to the `allow` prefixes with the
    key (ods-duo check); NOTIFY only to the relay, signed. The secondaries transfer from the relays,
    with TSIG (duo_ods/bind/relay.py)."""
    peers = [PeerView(prefix=_host_prefix(node.relay_address))]
    peers += [PeerView(prefix=prefix, key=tsig.name) for prefix in allow]
    notify = [RemoteView(address=node.relay_address, port=node.relay_port, key=tsig.name)]
    return AddnsView(node=node.name, tsig_keys=[tsig], transfer_peers=peers, notify=notify)
