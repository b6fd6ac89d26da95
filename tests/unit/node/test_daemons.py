"""How a node's daemons are started: a namespace unless the node owns the machine's /run/opendnssec."""

from pathlib import Path

import pytest

from duo_ods import process
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.node import daemons, systemd

CONFIG = """
[nodes.a]
address = "127.0.2.11"
layout = "system"
base_dir = "duo/a"
token_label = "A"
[nodes.b]
address = "127.0.2.12"
layout = "system"
root = "root-b"
base_dir = "root-b/duo"
token_label = "B"
[nodes.c]
address = "127.0.2.13"
base_dir = "c"
token_label = "C"
[backup]
dir = "backup"
"""


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    return load_config(tmp_path / "duo.toml")


def test_system_node_on_the_real_root_runs_plain(duo: Duo) -> None:
    assert daemons._command(duo.node("a"), "signerd") == [
        "/usr/sbin/ods-signerd",
        "-c",
        "/etc/opendnssec/conf.xml",
        "-d",
    ]


def test_system_node_under_a_root_and_lab_node_get_the_namespace(duo: Duo, tmp_path: Path) -> None:
    b = daemons._command(duo.node("b"), "enforcerd")
    assert b[:5] == ["unshare", "-m", "--propagation", "private", "--"]
    assert b[5:9] == process.python_module("duo_ods.node.nsexec")  # not a duo_ods/ in its cwd
    assert str(tmp_path / "root-b/run/opendnssec") in b
    assert b[-4:] == ["/usr/sbin/ods-enforcerd", "-c", str(tmp_path / "root-b/etc/opendnssec/conf.xml"), "-d"]
    assert daemons._command(duo.node("c"), "signerd")[0] == "unshare"


def test_systemd_only_for_a_system_node_on_the_real_root(duo: Duo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "systemd_running", lambda: True)
    assert systemd.uses_systemd(duo.node("a"))
    assert not systemd.uses_systemd(duo.node("b"))  # its root is not the machine's: not Debian's units
    assert not systemd.uses_systemd(duo.node("c"))
    monkeypatch.setattr(systemd, "systemd_running", lambda: False)
    assert not systemd.uses_systemd(duo.node("a"))
