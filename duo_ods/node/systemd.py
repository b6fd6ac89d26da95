"""Debian's systemd units for the ODS daemons, on a system node whose machine runs systemd.

opendnssec-enforcer.service and opendnssec-signer.service (from the opendnssec-enforcer and
opendnssec-signer packages) run `ods-enforcerd -d` / `ods-signerd -d` as root with the default
/etc/opendnssec/conf.xml, and do not start while /etc/opendnssec/prevent-startup exists.
Where systemd does not run (containers, this test machine) ods-duo starts the daemons itself
and stops them by pid (duo_ods.node.daemons).
"""

from __future__ import annotations

from pathlib import Path

from duo_ods.config.resolve import Node, SystemNodePaths
from duo_ods.node.plan import UnitState
from duo_ods.process import run

# daemon -> unit, in start order (the enforcer calls the signer after writing a signconf)
UNITS = {"signerd": "opendnssec-signer.service", "enforcerd": "opendnssec-enforcer.service"}


def systemd_running() -> bool:
    """sd_booted(3): systemd is PID 1 when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir()


def uses_systemd(node: Node) -> bool:
    """A system node on the real root of a systemd machine: the units run its daemons.
    Under another root the units (which read /etc/opendnssec) are not this node's."""
    paths = node.paths
    return isinstance(paths, SystemNodePaths) and not paths.namespace and systemd_running()


def systemctl(*args: str) -> str:
    return run(["systemctl", *args], timeout=90).stdout


def unit_state(unit: str) -> UnitState:
    enabled = run(["systemctl", "is-enabled", unit], check=False, timeout=30).stdout.strip()
    active = run(["systemctl", "is-active", unit], check=False, timeout=30).stdout.strip()
    return UnitState(enabled=enabled == "enabled", active=active == "active")


def main_pid(unit: str) -> int | None:
    value = systemctl("show", "--property", "MainPID", "--value", unit).strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
