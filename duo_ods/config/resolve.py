"""What the user's config resolves to: absolute paths and derived values.

Every node-local path is derived here, in one place, so the runtime, the
renderer and the lab agree on where things live.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from duo_ods.config.model import BackupConfig, DuoConfig, NodeConfig, SecondaryConfig
from duo_ods.errors import ConfigError


@dataclass(frozen=True)
class NodePaths:
    """Where a node keeps what it owns. All absolute."""

    base: Path

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def conf_xml(self) -> Path:
        return self.etc / "conf.xml"

    @property
    def kasp_xml(self) -> Path:
        return self.etc / "kasp.xml"

    @property
    def zonelist_xml(self) -> Path:
        return self.etc / "zonelist.xml"

    @property
    def addns_xml(self) -> Path:
        return self.etc / "addns.xml"

    @property
    def softhsm_conf(self) -> Path:
        return self.etc / "softhsm2.conf"

    @property
    def var(self) -> Path:
        return self.base / "var"

    @property
    def kasp_db(self) -> Path:
        return self.var / "kasp.db"

    @property
    def enforcer_dir(self) -> Path:
        return self.var / "enforcer"

    @property
    def signer_dir(self) -> Path:
        return self.var / "signer"

    @property
    def signconf_dir(self) -> Path:
        return self.var / "signconf"

    @property
    def unsigned_dir(self) -> Path:
        """The last good, checked copy of each zone: what the signer reads."""
        return self.var / "unsigned"

    @property
    def tokens(self) -> Path:
        return self.base / "tokens"

    @property
    def run(self) -> Path:
        """Bind-mounted over /run/opendnssec inside the node's mount namespace."""
        return self.base / "run"

    @property
    def enforcer_sock(self) -> Path:
        return self.run / "enforcer.sock"

    @property
    def signer_sock(self) -> Path:
        return self.run / "engine.sock"

    @property
    def log(self) -> Path:
        return self.base / "log"

    @property
    def secrets(self) -> Path:
        return self.base / "secrets"

    @property
    def state(self) -> Path:
        """ods-duo's own bookkeeping for the node (daemon pids, zone status)."""
        return self.base / "state"

    def unsigned_zone(self, zone: str) -> Path:
        return self.unsigned_dir / zone_file_name(zone)

    def signconf(self, zone: str) -> Path:
        return self.signconf_dir / f"{zone_file_name(zone)}.xml"

    @property
    def namespace(self) -> bool:
        """Whether the daemons need `run` bind-mounted over /run/opendnssec in a mount namespace."""
        return True


@dataclass(frozen=True)
class SystemNodePaths(NodePaths):
    """A Debian OpenDNSSEC install, one node per machine: the packages' own paths under `root`.

    /etc/opendnssec and /var/lib/opendnssec as opendnssec-common ships them, SoftHSM's
    /etc/softhsm/softhsm2.conf and /var/lib/softhsm/tokens, and /run/opendnssec (tmpfiles.d).
    `base` keeps only ods-duo's own files: secrets, state, daemon logs, the input directory.
    """

    root: Path = Path("/")

    @property
    def etc(self) -> Path:
        return self.root / "etc/opendnssec"

    @property
    def var(self) -> Path:
        return self.root / "var/lib/opendnssec"

    @property
    def softhsm_conf(self) -> Path:
        return self.root / "etc/softhsm/softhsm2.conf"

    @property
    def softhsm_dir(self) -> Path:
        return self.root / "var/lib/softhsm"

    @property
    def tokens(self) -> Path:
        return self.softhsm_dir / "tokens"

    @property
    def run(self) -> Path:
        return self.root / "run/opendnssec"

    @property
    def prevent_startup(self) -> Path:
        """Debian's flag file: while it exists the systemd units do not start the daemons."""
        return self.etc / "prevent-startup"

    @property
    def namespace(self) -> bool:
        # The signer's socket and pid file are fixed at /run/opendnssec and the enforcer calls
        # `ods-signer update` on that socket. On the real root that is the node's own folder; under
        # any other root the daemons must see ROOT/run/opendnssec there, or they would take the
        # host's (or another test's) sockets: so the same bind-mount as the lab.
        return self.root != Path("/")


def zone_file_name(zone: str) -> str:
    """A file name for a zone; the root zone has no name of its own."""
    return "root" if zone == "." else zone


@dataclass(frozen=True)
class SshTarget:
    """Where and how `transport = "ssh"` reaches a node; local paths absolute."""

    host: str
    port: int
    user: str
    identity_file: Path
    known_hosts_file: Path
    remote_command: str
    remote_config: str  # a path on the node, used as written
    connect_timeout: int
    op_timeout: int


@dataclass(frozen=True)
class Node:
    name: str
    config: NodeConfig
    paths: NodePaths
    input_dir: Path
    pin_file: Path
    ssh: SshTarget | None = None  # set when the node's transport is ssh

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def relay_address(self) -> str:
        """Where the node's transfer relay listens (and the address it transfers from)."""
        return self.config.relay_address or self.config.address

    @property
    def relay_port(self) -> int:
        return self.config.relay_port

    @property
    def relay_dir(self) -> Path:
        """The relay's named.conf, zone copies, catalog and pid record."""
        return self.paths.base / "relay"


@dataclass(frozen=True)
class Backup:
    """The backup store: a folder of bundles and a token for the KEK."""

    config: BackupConfig
    dir: Path
    pin_file: Path

    @property
    def name(self) -> str:
        return "backup"

    @property
    def softhsm_conf(self) -> Path:
        return self.dir / "etc" / "softhsm2.conf"

    @property
    def tokens(self) -> Path:
        return self.dir / "tokens"

    @property
    def secrets(self) -> Path:
        return self.dir / "secrets"


@dataclass(frozen=True)
class Duo:
    """A validated config with every path made absolute."""

    config: DuoConfig
    config_path: Path
    nodes: dict[str, Node]
    backup: Backup
    tsig_key_path: Path
    secondary_dirs: dict[str, Path]  # the secondaries ods-duo runs itself (the lab)

    @property
    def backup_dir(self) -> Path:
        return self.backup.dir

    def secondary(self, name: str) -> SecondaryConfig:
        for sec in self.config.secondaries:
            if sec.name == name:
                return sec
        raise ConfigError(str(self.config_path), [f"[secondaries] no secondary named {name!r}"])

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise ConfigError(str(self.config_path), [f"[nodes] no node named {name!r}"]) from None


def _abs(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _ssh_target(here: Path, node: NodeConfig) -> SshTarget | None:
    if node.transport != "ssh" or node.ssh is None:  # an ssh table is ignored with "local"
        return None
    ssh = node.ssh
    return SshTarget(
        host=ssh.host or node.address,
        port=ssh.port,
        user=ssh.user,
        identity_file=_abs(here, ssh.identity_file),
        known_hosts_file=_abs(here, ssh.known_hosts_file),
        remote_command=ssh.remote_command,
        remote_config=ssh.remote_config,
        connect_timeout=ssh.connect_timeout,
        op_timeout=ssh.op_timeout,
    )


def resolve(config: DuoConfig, config_path: Path) -> Duo:
    here = config_path.parent
    nodes: dict[str, Node] = {}
    for name, node in config.nodes.items():
        base = _abs(here, node.base_dir)
        paths = (
            SystemNodePaths(base, root=_abs(here, node.root)) if node.layout == "system" else NodePaths(base)
        )
        nodes[name] = Node(
            name=name,
            config=node,
            paths=paths,
            input_dir=_abs(here, node.input_dir) if node.input_dir else base / "input",
            pin_file=_abs(here, node.pin_file) if node.pin_file else base / "secrets" / "pin",
            ssh=_ssh_target(here, node),
        )
    backup_dir = _abs(here, config.backup.dir)
    backup = Backup(
        config=config.backup,
        dir=backup_dir,
        pin_file=_abs(here, config.backup.pin_file)
        if config.backup.pin_file
        else backup_dir / "secrets" / "pin",
    )
    return Duo(
        config=config,
        config_path=config_path,
        nodes=nodes,
        backup=backup,
        tsig_key_path=_abs(here, config.transfer.tsig_key_file),
        secondary_dirs={s.name: _abs(here, s.dir) for s in config.secondaries if s.dir},
    )
