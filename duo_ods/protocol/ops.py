"""Every node operation, declared once: its name on the wire, its request and reply types, where it
runs (a signer node, the backup store, or any KEK holder) and whether it only reads.

The controller calls these through `protocol.client.NodeClient`; a node dispatches them through
`protocol.serve.dispatch` to the handlers that `node.handlers` and `backup.ops` bind to them. No
other module spells an operation's name (tests/unit/protocol checks that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import Field

from duo_ods.ods.kaspdb import is_dead
from duo_ods.protocol.fields import (
    Algorithm,
    Base64,
    Bits,
    Epoch,
    Fingerprint,
    KeyRole,
    Locator,
    Message,
    Serial,
    ZoneName,
    ZoneText,
)

Runs = Literal["node", "backup", "holder"]  # holder: a node or the backup (the KEK operations)

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)


@dataclass(frozen=True)
class Op(Generic[Req, Rep]):
    name: str
    request: type[Req]
    reply: type[Rep]
    runs: Runs
    reads_only: bool = False  # changes nothing on the node (a monitoring key may run it)

    def runs_on(self, target: str) -> bool:
        backup = target == "backup"
        return self.runs == "holder" or (self.runs == "backup") == backup


# --- shared shapes ------------------------------------------------------------------------


class Empty(Message):
    pass


class ZoneRequest(Message):
    zone: ZoneName


class LocatorRequest(Message):
    locator: Locator


class RecordStateMsg(Message):
    type: str
    state: str
    last_change: int
    minimize: int
    ttl: int


class KeyStateMsg(Message):
    """One key's enforcer state as kasp.db holds it (duo_ods.ods.kaspdb.KeyStates)."""

    zone: ZoneName
    locator: Locator
    role: KeyRole
    algorithm: Algorithm
    inception: int
    keytag: int
    flags: dict[str, int]
    records: list[RecordStateMsg]

    @property
    def dead(self) -> bool:
        return is_dead(self.model_dump())


class ZoneStateMsg(Message):
    """A zone's enforcer state (duo_ods.ods.kaspdb.ZoneState)."""

    zone: ZoneName
    fields: dict[str, int]
    keys: list[KeyStateMsg]
    dependencies: list[tuple[str, str, int]]

    def live(self) -> ZoneStateMsg:
        """Without its dead keys: a rebuilt node needs neither them nor their bundles."""
        keys = [k for k in self.keys if not k.dead]
        alive = {k.locator for k in keys}
        deps = [d for d in self.dependencies if d[0] in alive and d[1] in alive]
        return self.model_copy(update={"keys": keys, "dependencies": deps})


class ZoneExport(Message):
    zone: ZoneName
    text: ZoneText
    states: ZoneStateMsg | None


class Snapshot(Message):
    """What a rebuilt node needs besides its keys: every zone's input and key states, from one node."""

    taken: float
    node: str
    zones: list[ZoneExport]


class Bundle(Message):
    """A key bundle on the wire (duo_ods.keys.bundle.KeyBundle): nothing in it is secret in clear."""

    zone: ZoneName
    role: KeyRole
    algorithm: Algorithm
    bits: Bits
    locator: Locator
    inception: Epoch
    origin: str
    public: Base64
    wrapped: Base64
    kek: Fingerprint
    keytag: int = Field(ge=0, le=65535)


# --- node lifecycle -----------------------------------------------------------------------


class InitRequest(Message):
    dry_run: bool = False


class PlanStepMsg(Message):
    action: str
    kind: str
    target: str
    detail: str


class InitReply(Message):
    node: str
    layout: Literal["lab", "system"]
    root: str | None = None
    dry_run: bool = False
    plan: list[PlanStepMsg] = Field(default_factory=list)
    pending: int = 0
    done: list[PlanStepMsg] = Field(default_factory=list)
    text: str = ""
    token_created: bool | None = None
    database_created: bool | None = None
    configs: list[str] = Field(default_factory=list)


class StartReply(Message):
    node: str
    pids: dict[str, int]


class StopReply(Message):
    node: str
    daemons: dict[str, str]


class StatusReply(Message):
    node: str
    address: str
    port: int
    initialised: bool
    has_database: bool
    daemons: dict[str, int | None]
    input_dir: str
    zones: list[str]


class SuperviseEvent(Message):
    """A daemon the node found dead, and what it did (duo_ods.node.supervise.Event)."""

    daemon: str
    pid: int
    seen: str
    action: Literal["started", "waiting", "start failed"]
    new_pid: int | None
    restarts: int
    retry_in: float
    error: str = ""


class SuperviseReply(Message):
    node: str
    events: list[SuperviseEvent]


class OutputReply(Message):
    node: str
    output: str


# --- zones --------------------------------------------------------------------------------


class InputStatus(Message):
    """What the node's watcher last did with the zone's input file."""

    status: str
    message: str
    file: str


class ZoneEntry(Message):
    name: ZoneName
    policy: str
    next_change: str
    input_digest: str | None = None
    input: InputStatus | None = None


class RefusedInput(Message):
    zone: str
    status: str
    message: str
    file: str


class ZoneListReply(Message):
    node: str
    zones: list[ZoneEntry]
    refused: list[RefusedInput] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [z.name for z in self.zones]


class ZoneInput(Message):
    zone: ZoneName
    text: ZoneText


class ZoneAddReply(Message):
    node: str
    zone: ZoneName
    added: bool


class ZoneBatchRequest(Message):
    zones: list[ZoneInput]


class ZoneBatchReply(Message):
    node: str
    added: list[str]


class ZoneUpdateRequest(Message):
    zone: ZoneName
    text: ZoneText
    serial: Serial | None = None


class ZoneUpdateReply(Message):
    node: str
    zone: ZoneName
    signing: bool
    note: str | None = None


class ZoneResignRequest(Message):
    zone: ZoneName
    serial: Serial


class ZoneResignReply(Message):
    node: str
    zone: ZoneName
    serial: Serial


class ZoneRemoveReply(Message):
    node: str
    zone: ZoneName
    removed: bool


class InputStateRequest(Message):
    zone: ZoneName | None = None  # one zone (and its files in the watched input directory), or every zone


class NodeInput(Message):
    """The signer's input for one zone: what it signs when it (re)starts or is told to sign."""

    zone: ZoneName
    digest: str | None  # sha256 of the input file, None when there is none
    mtime: float | None  # when that file was last written
    pending: bool = False  # stored while the signer was down: not signed since (serial not levelled)


class InputStateReply(Message):
    """A node's inputs, read from its files: it answers with its daemons down too."""

    node: str
    enforcer: bool
    signer: bool
    zones: list[NodeInput]  # the zones of the node's zonelist.xml
    watched: list[str] = Field(default_factory=list)  # the asked zone's files in the node's input_dir


class StateExportReply(Message):
    node: str
    zones: list[ZoneExport]


# --- the KEK (nodes and the backup store) -------------------------------------------------


class KekStatusRequest(Message):
    algorithm: Algorithm | None = None


class KekStatusReply(Message):
    has_kek: bool
    fingerprint: Fingerprint | None
    can_wrap: bool | None = None
    # KEKs kept unwrap only after `kek init --replace` (the backup: for its old bundles; a node: only
    # while a restore unwraps bundles made under them)
    retired: list[Fingerprint] = Field(default_factory=list)


class TransportKeyReply(Message):
    """A receiver's one-time RSA transport key; its fingerprint is what the operator confirms."""

    public: Base64
    fingerprint: Fingerprint


class ReplaceRequest(Message):
    replace: bool = False


class FingerprintReply(Message):
    fingerprint: Fingerprint


class KekGenerateReply(Message):
    fingerprint: Fingerprint
    retired: str | None = None  # the label the replaced KEK lives on under (unwrap only)


class KekPinRequest(Message):
    """The backup token's SO pins a transport key whose fingerprint the operator confirmed."""

    public: Base64
    fingerprint: Fingerprint


class FingerprintRequest(Message):
    fingerprint: Fingerprint


class LabelReply(Message):
    label: str


class CountReply(Message):
    count: int


class CustodyObject(Message):
    """One token object and the attributes that decide who may get it out (duo_ods.hsm.custody)."""

    label: str
    object_class: str
    key_type: str
    cka_id: str
    role: str
    private: bool | None
    sensitive: bool | None
    extractable: bool | None
    always_sensitive: bool | None
    never_extractable: bool | None
    wrap_with_trusted: bool | None
    trusted: bool | None
    copyable: bool | None
    modifiable: bool | None
    destroyable: bool | None
    wrap: bool | None
    unwrap: bool | None
    encrypt: bool | None
    decrypt: bool | None
    sign: bool | None
    derive: bool | None
    unwrap_template: bool


class CustodyReply(Message):
    objects: list[CustodyObject]
    problems: list[str]


class KekWrapForRequest(Message):
    public: Base64
    retired: Fingerprint | None = None  # hand on this retired KEK (a restore of old bundles), not the KEK


class BlobReply(Message):
    blob: Base64


class KekUnwrapRequest(Message):
    blob: Base64
    replace: bool = False
    retired: Fingerprint | None = None  # the blob is this retired KEK: kept unwrap only, beside the KEK


# --- key pairs in a node's HSM ------------------------------------------------------------


class KeyGenerateRequest(Message):
    algorithm: Algorithm
    bits: Bits
    locator: Locator  # chosen by the controller, so its journal names the key before it exists


class KeyGenerateReply(Message):
    locator: Locator
    bits: Bits
    public: Base64


class KeyWrapReply(Message):
    wrapped: Base64
    kek: Fingerprint


class KeyUnwrapRequest(Message):
    locator: Locator
    algorithm: Algorithm
    bits: Bits
    public: Base64
    wrapped: Base64
    kek: Fingerprint | None = None  # the KEK the bundle was wrapped under (None: the current KEK)


class KeyUnwrapReply(Message):
    created: bool
    confirmed: bool


class KeySealReply(Message):
    sealed_now: bool  # False: it was sealed already
    sealed: bool  # read back from the token


class KeyPublicReply(Message):
    present: bool
    public: Base64 | None


class KeyDeleteReply(Message):
    deleted: int


class HsmObject(Message):
    locator: Locator
    object_class: Literal["private", "public"]
    key_type: Literal["RSA", "EC", "EC_EDWARDS", "other"]
    extractable: bool | None


class HsmListReply(Message):
    keys: list[HsmObject]


# Batches: one request for many keys, so a flow pays one round trip and one token session per
# node and step, not one per key (keys.flow's batched key create). Replies are in request order.
MAX_BATCH = 1000  # keys in one batch request


class KeyGenerateBatchRequest(Message):
    keys: list[KeyGenerateRequest] = Field(max_length=MAX_BATCH)


class KeyGenerateBatchReply(Message):
    keys: list[KeyGenerateReply]


class LocatorsRequest(Message):
    locators: list[Locator] = Field(max_length=MAX_BATCH)


class KeyWrapBatchReply(Message):
    keys: list[KeyWrapReply]


class KeyUnwrapBatchRequest(Message):
    keys: list[KeyUnwrapRequest] = Field(max_length=MAX_BATCH)


class KeyUnwrapBatchReply(Message):
    keys: list[KeyUnwrapReply]


class KeySealBatchReply(Message):
    keys: list[KeySealReply]


# --- a node's enforcer --------------------------------------------------------------------


class KeyImportRequest(Message):
    zone: ZoneName
    locator: Locator
    role: KeyRole
    algorithm: Algorithm
    bits: Bits
    inception: Epoch


class KeyImportReply(Message):
    imported: bool


class KeyImportBatchRequest(Message):
    keys: list[KeyImportRequest] = Field(max_length=MAX_BATCH)


class KeyImportBatchReply(Message):
    imported: list[bool]


class KeyListRequest(Message):
    zone: ZoneName | None = None


class KeyRecords(Message):
    ds: str
    dnskey: str
    rrsig_dnskey: str
    rrsig: str
    published: bool
    active: bool


class EnforcerKeyMsg(Message):
    zone: ZoneName
    role: KeyRole
    state: str
    next: str
    bits: int
    algorithm: int
    locator: Locator
    keytag: int
    records: KeyRecords | None


class KeyListReply(Message):
    node: str
    keys: list[EnforcerKeyMsg]


class DbSchemaReply(Message):
    schema_version: int
    pool: list[Locator]


class KeyPoolAddRequest(Message):
    locator: Locator
    role: KeyRole
    algorithm: Algorithm
    bits: Bits
    inception: Epoch


class AddedReply(Message):
    added: bool


class RemovedReply(Message):
    removed: bool


class KeyStatesRequest(Message):
    zone: ZoneName | None = None


class KeyStatesReply(Message):
    node: str
    zones: list[ZoneStateMsg]

    def keys_of(self, zone: str) -> list[KeyStateMsg] | None:
        """The zone's keys, or None when the node does not have the zone."""
        return next((z.keys for z in self.zones if z.zone == zone), None)


class KeyStatesWriteRequest(Message):
    zones: list[ZoneStateMsg]


class KeyStatesWriteReply(Message):
    node: str
    keys: int


class KeyRolloverRequest(Message):
    zone: ZoneName
    role: KeyRole


class AtReply(Message):
    node: str
    at: float


class KeyDsRequest(Message):
    zone: ZoneName
    keytag: int = Field(ge=0, le=65535)
    action: Literal["seen", "gone"]


class KeyDsReply(Message):
    node: str
    was: str
    ran: list[str]
    at: float


# --- the backup store ---------------------------------------------------------------------


class BackupInitReply(Message):
    dir: str
    token_created: bool


class BundleRequest(Message):
    bundle: Bundle


class DigestReply(Message):
    digest: str


class BundleBatchRequest(Message):
    bundles: list[Bundle] = Field(max_length=MAX_BATCH)


class DigestsReply(Message):
    digests: list[str]


class BundleListReply(Message):
    bundles: list[Bundle]


class BundleVerifyReply(Message):
    locator: Locator
    ok: bool
    problem: str | None


class SnapshotPutRequest(Message):
    snapshot: Snapshot


class PathReply(Message):
    path: str


class SnapshotGetReply(Message):
    snapshot: Snapshot | None


class VerifyResult(Message):
    """The last `backup verify`: when it ran, whether it passed, how many problems it found."""

    at: float
    ok: bool
    problems: int = Field(ge=0)


class VerifyRecordRequest(Message):
    record: VerifyResult | None = None  # saved first when given


class VerifyRecordReply(Message):
    last: VerifyResult | None


class DeadSinceRequest(Message):
    ledger: dict[str, float] | None = None  # replaces the ledger when given


class LedgerReply(Message):
    ledger: dict[str, float]


class RelaySyncReply(Message):
    """The node's transfer relay after a sync: the zones it carries, its catalog and the members."""

    node: str
    zones: list[ZoneName]
    members: list[ZoneName]
    catalog: str
    serial: int | None
    changed: bool
    reloaded: bool


# --- the table ----------------------------------------------------------------------------

INIT = Op("init", InitRequest, InitReply, "node")
START = Op("start", Empty, StartReply, "node")
STOP = Op("stop", Empty, StopReply, "node")
STATUS = Op("status", Empty, StatusReply, "node", reads_only=True)
# Start a daemon of the node that died (not one stopped on purpose): the node's watcher asks.
SUPERVISE = Op("supervise", Empty, SuperviseReply, "node")
POLICY_IMPORT = Op("policy-import", Empty, OutputReply, "node")
ZONE_LIST = Op("zone-list", Empty, ZoneListReply, "node", reads_only=True)
ZONE_ADD = Op("zone-add", ZoneInput, ZoneAddReply, "node")
ZONE_ADD_BATCH = Op("zone-add-batch", ZoneBatchRequest, ZoneBatchReply, "node")
ZONE_UPDATE = Op("zone-update", ZoneUpdateRequest, ZoneUpdateReply, "node")
ZONE_RESIGN = Op("zone-resign", ZoneResignRequest, ZoneResignReply, "node")
ZONE_REMOVE = Op("zone-remove", ZoneRequest, ZoneRemoveReply, "node")
STATE_EXPORT = Op("state-export", Empty, StateExportReply, "node", reads_only=True)
INPUT_STATE = Op("input-state", InputStateRequest, InputStateReply, "node", reads_only=True)
ZONE_LEVELLED = Op("zone-levelled", ZoneRequest, Empty, "node")  # its pending input needs no new serial
# The node's relay carries the zones its signer serves, its catalog lists those the relay serves.
RELAY_SYNC = Op("relay-sync", Empty, RelaySyncReply, "node")

KEK_STATUS = Op("kek-status", KekStatusRequest, KekStatusReply, "holder", reads_only=True)
KEK_TRANSPORT_KEY = Op("kek-transport-key", Empty, TransportKeyReply, "holder")
KEK_UNWRAP = Op("kek-unwrap", KekUnwrapRequest, FingerprintReply, "holder")
HSM_CUSTODY = Op("hsm-custody", Empty, CustodyReply, "holder", reads_only=True)
# A node drops the retired KEKs a restore handed it, once the bundles made under them are unwrapped.
KEK_DROP_RETIRED = Op("kek-drop-retired", Empty, CountReply, "node")
# Only the backup token makes the KEK and hands it on, and only to transport keys its SO pinned.
KEK_GENERATE = Op("kek-generate", ReplaceRequest, KekGenerateReply, "backup")
KEK_PIN = Op("kek-pin", KekPinRequest, LabelReply, "backup")
KEK_UNPIN = Op("kek-unpin", FingerprintRequest, CountReply, "backup")
KEK_WRAP_FOR = Op("kek-wrap-for", KekWrapForRequest, BlobReply, "backup")

KEY_GENERATE = Op("key-generate", KeyGenerateRequest, KeyGenerateReply, "node")
KEY_WRAP = Op("key-wrap", LocatorRequest, KeyWrapReply, "node")
KEY_UNWRAP = Op("key-unwrap", KeyUnwrapRequest, KeyUnwrapReply, "node")
KEY_SEAL = Op("key-seal", LocatorRequest, KeySealReply, "node")
KEY_PUBLIC = Op("key-public", LocatorRequest, KeyPublicReply, "node", reads_only=True)
KEY_DELETE = Op("key-delete", LocatorRequest, KeyDeleteReply, "node")
HSM_LIST = Op("hsm-list", Empty, HsmListReply, "node", reads_only=True)
KEY_IMPORT = Op("key-import", KeyImportRequest, KeyImportReply, "node")
KEY_GENERATE_BATCH = Op("key-generate-batch", KeyGenerateBatchRequest, KeyGenerateBatchReply, "node")
KEY_WRAP_BATCH = Op("key-wrap-batch", LocatorsRequest, KeyWrapBatchReply, "node")
KEY_UNWRAP_BATCH = Op("key-unwrap-batch", KeyUnwrapBatchRequest, KeyUnwrapBatchReply, "node")
KEY_SEAL_BATCH = Op("key-seal-batch", LocatorsRequest, KeySealBatchReply, "node")
KEY_IMPORT_BATCH = Op("key-import-batch", KeyImportBatchRequest, KeyImportBatchReply, "node")
ENFORCE = Op("enforce", Empty, Empty, "node")
KEY_LIST = Op("key-list", KeyListRequest, KeyListReply, "node", reads_only=True)
DB_SCHEMA = Op("db-schema", Empty, DbSchemaReply, "node", reads_only=True)
KEY_POOL_ADD = Op("key-pool-add", KeyPoolAddRequest, AddedReply, "node")
KEY_POOL_REMOVE = Op("key-pool-remove", LocatorRequest, RemovedReply, "node")
KEY_STATES = Op("key-states", KeyStatesRequest, KeyStatesReply, "node", reads_only=True)
KEY_STATES_WRITE = Op("key-states-write", KeyStatesWriteRequest, KeyStatesWriteReply, "node")
# The same on a running node: its enforcer stops for the write (a returning zone's reused keys).
KEY_STATES_ADOPT = Op("key-states-adopt", KeyStatesWriteRequest, KeyStatesWriteReply, "node")
KEY_ROLLOVER = Op("key-rollover", KeyRolloverRequest, AtReply, "node")
KEY_DS = Op("key-ds", KeyDsRequest, KeyDsReply, "node")

BACKUP_INIT = Op("backup-init", Empty, BackupInitReply, "backup")
BUNDLE_PUT = Op("bundle-put", BundleRequest, DigestReply, "backup")
BUNDLE_PUT_BATCH = Op("bundle-put-batch", BundleBatchRequest, DigestsReply, "backup")
BUNDLE_LIST = Op("bundle-list", Empty, BundleListReply, "backup", reads_only=True)
BUNDLE_REMOVE = Op("bundle-remove", LocatorRequest, Empty, "backup")
BUNDLE_VERIFY = Op("bundle-verify", LocatorRequest, BundleVerifyReply, "backup", reads_only=True)
SNAPSHOT_PUT = Op("snapshot-put", SnapshotPutRequest, PathReply, "backup")
SNAPSHOT_GET = Op("snapshot-get", Empty, SnapshotGetReply, "backup", reads_only=True)
DEAD_SINCE = Op("dead-since", DeadSinceRequest, LedgerReply, "backup")
VERIFY_RECORD = Op("verify-record", VerifyRecordRequest, VerifyRecordReply, "backup")

TABLE: dict[str, Op[Any, Any]] = {
    op.name: op
    for op in (
        INIT, START, STOP, STATUS, SUPERVISE, POLICY_IMPORT, ZONE_LIST, ZONE_ADD, ZONE_ADD_BATCH,
        ZONE_UPDATE, ZONE_RESIGN, ZONE_REMOVE, STATE_EXPORT, INPUT_STATE, ZONE_LEVELLED, RELAY_SYNC,
        KEK_STATUS, KEK_TRANSPORT_KEY, KEK_UNWRAP, HSM_CUSTODY, KEK_DROP_RETIRED,
        KEK_GENERATE, KEK_PIN, KEK_UNPIN, KEK_WRAP_FOR,
        KEY_GENERATE, KEY_WRAP, KEY_UNWRAP, KEY_SEAL, KEY_PUBLIC, KEY_DELETE, HSM_LIST, KEY_IMPORT, ENFORCE,
        KEY_LIST, DB_SCHEMA, KEY_POOL_ADD, KEY_POOL_REMOVE, KEY_STATES, KEY_STATES_WRITE, KEY_ROLLOVER,
        KEY_DS, KEY_STATES_ADOPT, KEY_GENERATE_BATCH, KEY_WRAP_BATCH, KEY_UNWRAP_BATCH, KEY_SEAL_BATCH,
        KEY_IMPORT_BATCH,
        BACKUP_INIT, BUNDLE_PUT, BUNDLE_PUT_BATCH, BUNDLE_LIST, BUNDLE_REMOVE, BUNDLE_VERIFY, SNAPSHOT_PUT,
        SNAPSHOT_GET,
        DEAD_SINCE, VERIFY_RECORD,
    )
}  # fmt: skip
