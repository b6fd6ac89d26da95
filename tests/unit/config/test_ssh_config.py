"""Config for `transport = "ssh"`: what is required, the defaults, and where paths resolve."""

from pathlib import Path

import pytest

from duo_ods.config.load import load_config, parse_config
from duo_ods.transport import LocalTransport, RoutingTransport, SshTransport, transport_for
from tests.unit.config.test_model import GOOD, problems

SSH_B = GOOD.replace(
    '[nodes.b]\naddress = "127.0.0.12"', '[nodes.b]\naddress = "127.0.0.12"\ntransport = "ssh"'
)
SSH_TABLE = '[nodes.b.ssh]\nidentity_file = "ssh/id_ed25519"\nknown_hosts_file = "/etc/ods-duo/known_hosts"\n'


def test_ssh_without_its_table_names_the_node() -> None:
    assert problems(SSH_B) == [
        "[nodes.b] transport 'ssh' needs an ssh table for this node "
        "(at least identity_file and known_hosts_file)"
    ]


def test_ssh_table_needs_key_and_known_hosts() -> None:
    assert problems(SSH_B + '[nodes.b.ssh]\nuser = "duo"\n') == [
        "[nodes.b.ssh.identity_file] Field required",
        "[nodes.b.ssh.known_hosts_file] Field required",
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            'host = "-oProxyCommand=sh"',
            "[nodes.b.ssh.host] '-oProxyCommand=sh' is not a host name or address",
        ),
        ('user = "-F/tmp/x"', "[nodes.b.ssh.user] '-F/tmp/x' is not a user name"),
        (
            'remote_command = "ods-duo; sh"',
            "[nodes.b.ssh.remote_command] 'ods-duo; sh': give one program name",
        ),
        ('remote_config = "duo.toml"', "[nodes.b.ssh.remote_config] 'duo.toml': the config path on the node"),
        ("connect_timeout = 0", "[nodes.b.ssh.connect_timeout] Input should be greater than or equal to 1"),
        ("op_timeout = 5", "[nodes.b.ssh] op_timeout (5 s) must be longer than connect_timeout (10 s)"),
    ],
)
def test_bad_ssh_settings(line: str, problem: str) -> None:
    (found,) = problems(SSH_B + SSH_TABLE + line + "\n")
    assert found.startswith(problem)


def test_defaults_and_resolved_paths(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(SSH_B + SSH_TABLE)
    duo = load_config(path)
    assert duo.nodes["a"].ssh is None
    ssh = duo.nodes["b"].ssh
    assert ssh is not None
    assert (ssh.host, ssh.port, ssh.user) == ("127.0.0.12", 22, "root")  # host: the node's address
    assert ssh.identity_file == tmp_path / "ssh/id_ed25519"  # relative to the config's folder
    assert ssh.known_hosts_file == Path("/etc/ods-duo/known_hosts")
    assert (ssh.remote_command, ssh.remote_config) == ("ods-duo", "/etc/ods-duo/duo.toml")
    assert (ssh.connect_timeout, ssh.op_timeout) == (10, 300)


def test_ssh_table_is_ignored_with_local_transport(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(GOOD + SSH_TABLE)
    duo = load_config(path)
    assert duo.nodes["b"].ssh is None
    assert isinstance(transport_for(duo), LocalTransport)


def test_transport_for_routes_per_node(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(SSH_B + SSH_TABLE + 'host = "b.example.net"\n')
    transport = transport_for(load_config(path))
    assert isinstance(transport, RoutingTransport)
    assert isinstance(transport.local, LocalTransport)
    assert set(transport.remote) == {"b"}
    remote = transport.remote["b"]
    assert isinstance(remote, SshTransport)
    assert remote.target.host == "b.example.net"


def test_explicit_host_is_kept() -> None:
    config = parse_config(SSH_B + SSH_TABLE + 'host = "signer-b.example.net"\nport = 2222\n', "x")
    ssh = config.nodes["b"].ssh
    assert ssh is not None and (ssh.host, ssh.port) == ("signer-b.example.net", 2222)
