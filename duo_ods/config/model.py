"""The config file as the user writes it (TOML), validated with pydantic.

Paths stay as written here; duo_ods.config.resolve turns them into absolute
paths and derived values. Validation is pure: nothing here touches the disk.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from duo_ods.config.durations import parse_duration
from duo_ods.config.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# A TSIG key name: a DNS name of plain labels (letters, digits, '-', '_'), optional final dot. It goes
# into named.conf and the signers' addns.xml as it is, so nothing else may be in it.
_KEY_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
KEY_NAME_RE = re.compile(rf"(?=.{{1,254}}\Z){_KEY_LABEL}(?:\.{_KEY_LABEL})*\.?")

# DNSSEC algorithm -> (key size ODS expects in <Algorithm length=...>, allowed sizes)
ALGORITHMS: dict[int, tuple[int, tuple[int, ...]]] = {
    8: (2048, (1024, 2048, 3072, 4096)),  # RSASHA256
    13: (256, (256,)),  # ECDSAP256SHA256
    15: (256, (256,)),  # ED25519
}


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _address(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lowercase letters, digits, '-', starting with a letter)"
        )
    return value


def _key_name(value: str) -> str:
    if not KEY_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a key name (a DNS name: letters, digits, '-', '_' and dots)")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
Address = Annotated[str, AfterValidator(_address)]
Port = Annotated[int, Field(ge=1, le=65535)]
Name = Annotated[str, AfterValidator(_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What may follow `ssh -l` / stand as the ssh destination: never an option (no leading '-').
SSH_HOST_RE = re.compile(r"^[A-Za-z0-9_.:%][A-Za-z0-9_.:%-]*$")
SSH_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _ssh_host(value: str) -> str:
    if not SSH_HOST_RE.match(value):
        raise ValueError(f"{value!r} is not a host name or address")
    return value


def _ssh_user(value: str) -> str:
    if not SSH_USER_RE.match(value):
        raise ValueError(f"{value!r} is not a user name")
    return value


def _remote_command(value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise ValueError(f"{value!r}: give one program name or path (no spaces, no options)")
    return value


def _remote_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: the config path on the node must be absolute")
    return value


class SshConfig(_Model):
    """How the controller reaches a node with `transport = "ssh"` (OpenSSH, key auth, checked host key)."""

    host: Annotated[str, AfterValidator(_ssh_host)] | None = None  # default: the node's address
    port: Port = 22
    user: Annotated[str, AfterValidator(_ssh_user)] = "root"
    identity_file: str  # the controller's private key for this node
    known_hosts_file: str  # the node's host key; checked strictly, never learned on first use
    remote_command: Annotated[str, AfterValidator(_remote_command)] = "ods-duo"  # ods-duo on the node
    remote_config: Annotated[str, AfterValidator(_remote_path)] = "/etc/ods-duo/duo.toml"
    connect_timeout: int = Field(default=10, ge=1, le=600)  # TCP connect + ssh handshake (s)
    op_timeout: int = Field(default=300, ge=1, le=86400)  # one whole operation (s)

    @model_validator(mode="after")
    def _check_timeouts(self) -> SshConfig:
        if self.op_timeout <= self.connect_timeout:
            raise ValueError(
                f"op_timeout ({self.op_timeout} s) must be longer than "
                f"connect_timeout ({self.connect_timeout} s)"
            )
        return self


class NodeConfig(_Model):
    """One signer node: an OpenDNSSEC enforcer + signer pair with its own HSM token."""

    address: Address
    port: Port = 53
    transport: Literal["local", "ssh"] = "local"
    ssh: SshConfig | None = None  # required with transport = "ssh"; ignored with "local"
    base_dir: str  # node-local directory: configs, database, token, run, logs
    # lab: everything under base_dir, daemons in a mount namespace (many nodes per machine).
    # system: Debian's OpenDNSSEC/SoftHSM paths under `root`; base_dir keeps only ods-duo's own files.
    layout: Literal["lab", "system"] = "lab"
    root: str = "/"  # system layout: prefix of every system path ("/" on a real node; tests: a temp dir)
    input_dir: str | None = None  # watched zone input directory; default BASE/input
    hsm_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    token_label: str = Field(min_length=1, max_length=32)
    pin_file: str | None = None  # default BASE/secrets/pin (0600)
    softhsm: bool = True  # manage a SoftHSM2 token (softhsm2.conf, token init) for this node
    worker_threads: int = Field(default=2, ge=1, le=64)
    signer_threads: int = Field(default=2, ge=1, le=64)
    # The node's transfer relay (a BIND instance next to the signer, docs/operators-guide.md): it pulls
    # from this signer only and serves the secondaries with TSIG. None: the node's address.
    relay_address: Address | None = None
    relay_port: Port = 1053

    @model_validator(mode="after")
    def _check_transport(self) -> NodeConfig:
        if self.transport == "ssh" and self.ssh is None:
            raise ValueError(
                "transport 'ssh' needs an ssh table for this node "
                "(at least identity_file and known_hosts_file)"
            )
        return self


class PolicyConfig(_Model):
    """The signing policy every node runs (rendered into kasp.xml)."""

    name: Name = "duo"
    description: str = "ods-duo shared-key policy"
    algorithm: Literal[8, 13, 15] = 13
    bits: int | None = None  # default from the algorithm
    keys: Literal["csk", "ksk-zsk"] = "ksk-zsk"
    ksk_lifetime: Duration = "P1Y"
    zsk_lifetime: Duration = "P90D"
    csk_lifetime: Duration = "P1Y"
    dnskey_ttl: Duration = "PT3600S"
    publish_safety: Duration = "PT3600S"
    retire_safety: Duration = "PT3600S"
    resign: Duration = "PT2H"
    refresh: Duration = "P3D"
    validity_default: Duration = "P14D"
    validity_denial: Duration = "P14D"
    validity_keyset: Duration | None = None
    jitter: Duration = "PT12H"
    inception_offset: Duration = "PT3600S"
    max_zone_ttl: Duration = "P1D"
    nsec3: bool = True
    nsec3_iterations: int = Field(default=0, ge=0, le=500)  # RFC 9276: 0
    nsec3_salt_length: int = Field(default=0, ge=0, le=255)  # RFC 9276: empty salt
    nsec3_opt_out: bool = False
    nsec3_resalt: Duration = "P100D"
    nsec3param_ttl: Duration = "PT0S"  # the seed: not cacheable, so mixing NSEC3PARAMs is harmless
    soa_ttl: Duration = "PT3600S"
    soa_minimum: Duration = "PT3600S"
    serial: Literal["datecounter", "counter", "unixtime"] = "datecounter"
    zone_propagation_delay: Duration = "PT300S"
    # The two enforcers run the same commands up to a few seconds apart and a
    # restarted one lags by its downtime; this margin is added to the zone
    # propagation delay so key state moves wait for both nodes.
    skew_margin: Duration = "PT60S"
    parent_propagation_delay: Duration = "PT3600S"
    parent_registration_delay: Duration = "P1D"
    ds_ttl: Duration = "PT3600S"
    parent_soa_ttl: Duration = "PT3600S"
    parent_soa_minimum: Duration = "PT3600S"
    dnssec_records_in_input: Literal["refuse", "strip"] = "refuse"

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, keys: str) -> str:
        # ODS 2.1.12 `key import` gives a CSK (keytype 3) the ZSK record states
        # (keystate_import_cmd.c: `keytype == 1 ? ksk_mapping : zsk_mapping`), so an
        # imported CSK never signs the DNSKEY RRset. Every duo key is imported, so a
        # CSK policy cannot work until upstream maps CSKs; allow it again then.
        if keys == "csk":
            raise ValueError(
                "'csk' cannot work with OpenDNSSEC 2.1.12: its key import gives a CSK the ZSK states, "
                "so the DNSKEY RRset would go unsigned; use 'ksk-zsk'"
            )
        return keys

    @model_validator(mode="after")
    def _check_bits(self) -> PolicyConfig:
        default, allowed = ALGORITHMS[self.algorithm]
        if self.bits is not None and self.bits not in allowed:
            raise ValueError(f"bits {self.bits} does not fit algorithm {self.algorithm} (allowed: {allowed})")
        if self.bits is None:
            object.__setattr__(self, "bits", default)
        return self


class BackupConfig(_Model):
    """Where key bundles (wrapped keys, never clear) are kept, longer than the nodes keep them.

    The backup has a token of its own that holds the KEK, so it can prove (and one day
    restore) what it keeps without the KEK ever leaving an HSM.
    """

    dir: str
    retention: Duration = "P90D"
    # The key origin's watcher snapshots zones and key states after it changed something, at most
    # this often (seconds; 0: never, then run `backup snapshot` from cron). Key commands always do.
    snapshot_interval: float = Field(default=300.0, ge=0)
    hsm_module: str = "/usr/lib/softhsm/libsofthsm2.so"
    token_label: str = Field(default="DUO-BACKUP", min_length=1, max_length=32)
    pin_file: str | None = None  # default DIR/secrets/pin (0600)
    softhsm: bool = True


class SecondaryConfig(_Model):
    """A BIND secondary that pulls the signed zones from the signers by AXFR."""

    name: Name
    address: Address
    port: Port = 53
    # Node names it pulls from, in order. Empty: every node in failover order, or in split
    # mode the one node this secondary's set is given (round robin over the secondaries).
    primaries: list[Name] = Field(default_factory=list)
    dir: str | None = None  # where ods-duo runs this named itself (the lab); None: run elsewhere


class TransferConfig(_Model):
    """Zone transfers from the signers: TSIG for every transfer and NOTIFY, AXFR only."""

    tsig_key_file: str = "secrets/duo-transfer.key"  # a BIND key statement, 0600; made when missing
    key_name: Annotated[str, AfterValidator(_key_name)] = "duo-transfer"
    algorithm: Literal["hmac-sha256", "hmac-sha512"] = "hmac-sha256"
    # Kept so that older configs still load; it changes nothing since the relays: every transfer to the
    # secondaries is TSIG-signed by the node's relay (a BIND instance), and the signer itself serves
    # only its relay (ods-signerd 2.1.12 signs a multi-message AXFR in a way BIND 9.18 rejects).
    axfr_tsig: bool = False
    # Besides the secondaries, who may transfer from the signers (with the key): `ods-duo check`.
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8"])
    mode: Literal["failover", "split"] = "failover"
    # Secondaries' refresh bounds (seconds): NOTIFY is the fast path, these catch a lost one.
    min_refresh: int = Field(default=60, ge=1)
    max_refresh: int = Field(default=300, ge=1)
    min_retry: int = Field(default=10, ge=1)
    max_retry: int = Field(default=60, ge=1)

    @field_validator("allow")
    @classmethod
    def _check_prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            ipaddress.ip_network(prefix, strict=False)
        return prefixes


class WatchConfig(_Model):
    """`ods-duo watch`: zone files in a node's input directory."""

    debounce: float = Field(default=0.5, gt=0, le=60)  # act once events are quiet this long (s)
    max_wait: float = Field(default=5.0, gt=0, le=600)  # but never wait longer than this (s)
    # Files known complete (closed by their writer, or moved into place) go once events are quiet this
    # long instead of `debounce` (s; at most `debounce`). A file seen only being created waits `debounce`.
    settle: float = Field(default=0.05, ge=0, le=60)
    batch_size: int = Field(default=500, ge=1)  # new zones per enforcer round trip
    # The key_origin node's watcher makes keys for new zones once every node has them.
    create_keys: bool = False
    # A deleted file removes its zone; off, the zone stays and the removal is reported.
    remove_zones: bool = False
    # The watcher starts its node's ods-signerd / ods-enforcerd again when one died (where ods-duo runs
    # them, not systemd: duo_ods.node.supervise); off, for a supervisor of your own (or a test that
    # keeps a daemon dead on purpose).
    supervise: bool = True


class InputConfig(_Model):
    """Limits on an input zone file (zone add, zone update and the watcher), checked before it is read."""

    # The file with its $INCLUDEs; checked from the file's size before a byte is read or hashed.
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    # Records in the zone, $GENERATE ranges counted before they expand (about 1.1 KB of memory each
    # while the file is checked).
    max_records: int = Field(default=DEFAULT_MAX_RECORDS, ge=1)


class SerialConfig(_Model):
    """The nodes' SOA serials for a zone drift apart as each re-signs on its own schedule."""

    # Further apart than this, the lagging node is brought up to the leading node's serial.
    max_spread: int = Field(default=5, ge=0)
    # How often (seconds) the key_origin node's watcher compares them; 0: never (zone level by hand).
    level_interval: float = Field(default=300.0, ge=0)


def split_agent(value: str) -> tuple[str, int]:
    """ADDRESS, ADDRESS:PORT or [IPV6]:PORT -> (address, port); port 53 when none is given."""
    if value.startswith("["):
        host, _sep, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (rest or "53")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, "53"
    ipaddress.ip_address(host)
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: port {port!r} is not 1-65535")
    return host, int(port)


def _agent(value: str) -> str:
    split_agent(value)
    return value


Agent = Annotated[str, AfterValidator(_agent)]


class ParentConfig(_Model):
    """Where a zone's DS goes and where it is checked (issue 15); `[parents."*"]` is every zone's.

    With none for a zone, the DS stays a person's job: `key ds` to the parent, then `key ds-seen`.
    """

    # The parent's name servers (or a validating resolver): every one must serve the new DS before
    # it is marked seen, and none the old one before it is marked gone.
    agents: list[Agent] = Field(min_length=1)
    # Run with the DS records on stdin (like ODS's DelegationSignerSubmitCommand), and
    # ODS_DUO_ZONE, ODS_DUO_ACTION ("add" or "remove") and ODS_DUO_KEYTAG in its environment.
    submit_command: list[str] = Field(default_factory=list)
    # An RFC 2136 UPDATE to the parent's primary, signed with the TSIG key in tsig_key_file (a BIND
    # key statement, 0600, relative to this file).
    update_server: Agent | None = None
    tsig_key_file: str | None = None
    parent_zone: str | None = None  # default: the zone without its first label

    @model_validator(mode="after")
    def _check_submit(self) -> ParentConfig:
        if self.update_server is not None and self.tsig_key_file is None:
            raise ValueError("update_server needs tsig_key_file (UPDATEs are always signed)")
        return self


class RolloverConfig(_Model):
    """The scheduler: the key origin's watcher (or `key schedule`) rolls keys whose lifetime passed."""

    auto: bool = True  # off: keys roll only by `key rollover`, as before issue 15
    interval: float = Field(default=30.0, gt=0, le=3600)  # seconds between the scheduler's looks
    submit_retry: float = Field(default=60.0, gt=0, le=86400)  # seconds before a failed submit is retried


class DuoConfig(_Model):
    """The whole duo: its nodes, one policy, the backup store and the secondaries."""

    name: Name = "duo"
    nodes: dict[str, NodeConfig]
    policy: PolicyConfig = PolicyConfig()
    backup: BackupConfig
    secondaries: list[SecondaryConfig] = Field(default_factory=list)
    transfer: TransferConfig = TransferConfig()
    key_origin: str | None = None  # node that makes keys for new zones (so two watchers never race)
    watch: WatchConfig = WatchConfig()
    input: InputConfig = InputConfig()
    serials: SerialConfig = SerialConfig()
    rollover: RolloverConfig = RolloverConfig()
    parents: dict[str, ParentConfig] = Field(default_factory=dict)  # zone (or "*") -> its parent

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: dict[str, NodeConfig]) -> dict[str, NodeConfig]:
        problems: list[str] = []
        if len(nodes) < 2:
            problems.append("a duo needs at least two nodes")
        for name in nodes:
            if name == "backup":
                problems.append("node name 'backup' is reserved for the backup store")
            if not NAME_RE.match(name):
                problems.append(f"node name {name!r} is not valid (lowercase letters, digits, '-')")
        seen: dict[tuple[str, int], str] = {}
        labels: dict[str, str] = {}
        for name, node in nodes.items():
            where = (node.address, node.port)
            if where in seen:
                problems.append(
                    f"nodes {seen[where]} and {name} both listen on {node.address} port {node.port}"
                )
            seen[where] = name
            if node.token_label in labels:
                problems.append(
                    f"nodes {labels[node.token_label]} and {name} use token label {node.token_label}"
                )
            labels[node.token_label] = name
        if problems:
            raise ValueError("; ".join(problems))
        return nodes

    @model_validator(mode="after")
    def _check_references(self) -> DuoConfig:
        problems: list[str] = []
        if self.key_origin is not None and self.key_origin not in self.nodes:
            problems.append(f"key_origin {self.key_origin!r} is not a node")
        names = [sec.name for sec in self.secondaries]
        if len(set(names)) != len(names):
            problems.append("secondary names must be unique")
        for sec in self.secondaries:
            for primary in sec.primaries:
                if primary not in self.nodes:
                    problems.append(f"secondary {sec.name}: primary {primary!r} is not a node")
        if problems:
            raise ValueError("; ".join(problems))
        return self
