"""What a system node wants: Debian's paths and owners under its root, and one PIN everywhere."""

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from click.testing import CliRunner

from duo_ods.cli.main import cli
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Node
from duo_ods.node import systemd
from duo_ods.node.plan import (
    Note,
    UnitState,
    WantDir,
    WantFile,
    WantSecret,
    WantToken,
    WantUnit,
    pending,
    plan_steps,
)
from duo_ods.node.system import apply_step, observe, wanted

CONFIG = """
[nodes.a]
address = "127.0.2.11"
layout = "system"
root = "root"
base_dir = "root/var/lib/ods-duo"
token_label = "DUO-A"
[nodes.b]
address = "127.0.2.12"
base_dir = "b"
token_label = "DUO-B"
[backup]
dir = "backup"
"""


def test_every_path_lives_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG)
    duo = load_config(tmp_path / "duo.toml")
    wants = wanted(duo, duo.nodes["a"], use_systemd=False)
    root = tmp_path / "root"
    paths = [w.path for w in wants if isinstance(w, WantDir | WantFile | WantSecret)]
    outside = [p for p in paths if not p.is_relative_to(root) and p != duo.tsig_key_path]
    assert outside == []
    files = {w.path.relative_to(root).as_posix(): w for w in wants if isinstance(w, WantFile)}
    assert sorted(files) == [
        "etc/opendnssec/addns.xml",
        "etc/opendnssec/conf.xml",
        "etc/opendnssec/kasp.xml",
        "etc/opendnssec/zonelist.xml",
        "etc/softhsm/softhsm2.conf",
        "var/lib/ods-duo/relay/named.conf",  # the node's transfer relay
    ]
    assert str(files["etc/opendnssec/conf.xml"].perms) == "root:opendnssec 0640"
    assert str(files["etc/opendnssec/zonelist.xml"].perms) == "opendnssec:opendnssec 0640"
    assert f"<SQLite>{root}/var/lib/opendnssec/kasp.db</SQLite>" in files["etc/opendnssec/conf.xml"].text
    assert f"directories.tokendir = {root}/var/lib/softhsm/tokens" in files["etc/softhsm/softhsm2.conf"].text
    # Nothing was written: a plan only reads.
    assert not root.exists()
    assert not duo.tsig_key_path.exists()


def test_conf_xml_carries_the_pin_the_plan_writes(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG)
    duo = load_config(tmp_path / "duo.toml")
    node = duo.nodes["a"]
    wants = wanted(duo, node, use_systemd=False)
    pin = next(w for w in wants if isinstance(w, WantSecret) and w.path == node.pin_file).value.strip()
    conf = next(w for w in wants if isinstance(w, WantFile) and w.path.name == "conf.xml")
    assert f"<PIN>{pin}</PIN>" in conf.text
    token = next(w for w in wants if isinstance(w, WantToken))
    assert token.label == "DUO-A"
    assert token.pin_file == node.pin_file


def test_units_only_where_systemd_runs_the_daemons(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG)
    duo = load_config(tmp_path / "duo.toml")
    with_systemd = wanted(duo, duo.nodes["a"], use_systemd=True)
    assert [w.name for w in with_systemd if isinstance(w, WantUnit)] == [
        "opendnssec-signer.service",
        "opendnssec-enforcer.service",
    ]
    without = wanted(duo, duo.nodes["a"], use_systemd=False)
    assert not any(isinstance(w, WantUnit) for w in without)
    assert any(isinstance(w, Note) and "node start a" in w.text for w in without)


def test_units_are_driven_through_systemctl_in_plan_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(systemd, "systemctl", lambda *args: calls.append(args) or "")
    monkeypatch.setattr(
        systemd,
        "unit_state",
        lambda unit: UnitState(enabled=unit.startswith("opendnssec-signer"), active=False),
    )
    wants = [WantUnit(u) for u in systemd.UNITS.values()]
    steps = plan_steps(wants, observe(wants))
    for step in pending(steps):
        apply_step(step, cast(Node, SimpleNamespace(name="a")))
    assert calls == [
        ("start", "opendnssec-signer.service"),
        ("enable", "opendnssec-enforcer.service"),
        ("start", "opendnssec-enforcer.service"),
    ]


def test_cli_dry_run_is_refused_for_a_lab_node(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(CONFIG)
    result = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "duo.toml"), "node", "init", "b", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "lab layout" in result.output
