from pathlib import Path

import pytest

from duo_ods.config.load import load_config, parse_config
from duo_ods.errors import ConfigError

GOOD = """
[nodes.a]
address = "127.0.0.11"
base_dir = "nodes/a"
token_label = "A"
[nodes.b]
address = "127.0.0.12"
base_dir = "/srv/b"
token_label = "B"
input_dir = "in"
[backup]
dir = "backup"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "duo.toml")
    return exc.value.problems


def test_good_config_defaults() -> None:
    config = parse_config(GOOD, "duo.toml")
    assert config.policy.algorithm == 13
    assert config.policy.bits == 256
    assert config.policy.nsec3_iterations == 0
    assert config.policy.nsec3_salt_length == 0
    assert config.policy.nsec3param_ttl == "PT0S"
    assert config.policy.serial == "datecounter"
    assert config.nodes["a"].port == 53


def test_every_problem_reported_with_its_place() -> None:
    text = GOOD.replace('"127.0.0.12"', '"127.0.0.300"').replace(
        "[backup]", "[policy]\nalgorithm = 7\njitter = '1h'\n[backup]"
    )
    assert problems(text) == [
        "[nodes.b.address] '127.0.0.300' does not appear to be an IPv4 or IPv6 address",
        "[policy.algorithm] Input should be 8, 13 or 15",
        "[policy.jitter] '1h' is not an ISO 8601 duration such as PT1H or P14D",
    ]


def test_unknown_option_is_named() -> None:
    assert problems(GOOD + "colour = 'red'\n") == ["[backup.colour] Extra inputs are not permitted"]


def test_cross_node_checks() -> None:
    text = GOOD.replace('"127.0.0.12"', '"127.0.0.11"').replace('token_label = "B"', 'token_label = "A"')
    assert problems(text) == [
        "[nodes] nodes a and b both listen on 127.0.0.11 port 53; nodes a and b use token label A"
    ]


def test_one_node_is_not_a_duo() -> None:
    text = GOOD.split("[nodes.b]", maxsplit=1)[0] + "[backup]\ndir = 'x'\n"
    assert problems(text) == ["[nodes] a duo needs at least two nodes"]


def test_references_must_exist() -> None:
    text = (
        'key_origin = "c"\n'
        + GOOD
        + '[[secondaries]]\nname = "ns1"\naddress = "127.0.0.1"\nprimaries = ["z"]\n'
    )
    assert problems(text) == ["[/] key_origin 'c' is not a node; secondary ns1: primary 'z' is not a node"]


def test_bits_must_fit_algorithm() -> None:
    assert problems(GOOD + "[policy]\nalgorithm = 13\nbits = 2048\n") == [
        "[policy] bits 2048 does not fit algorithm 13 (allowed: (256,))"
    ]
    assert parse_config(GOOD + "[policy]\nalgorithm = 8\n", "x").policy.bits == 2048


def test_toml_syntax_error() -> None:
    assert problems("[nodes.a\n")[0].startswith("not valid TOML:")


def test_resolve_paths(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(GOOD)
    duo = load_config(path)
    a, b = duo.nodes["a"], duo.nodes["b"]
    assert a.paths.base == tmp_path / "nodes/a"
    assert a.input_dir == tmp_path / "nodes/a/input"
    assert a.pin_file == tmp_path / "nodes/a/secrets/pin"
    assert b.paths.base == Path("/srv/b")
    assert b.input_dir == tmp_path / "in"
    assert duo.backup_dir == tmp_path / "backup"
    assert a.paths.unsigned_zone("example.com") == tmp_path / "nodes/a/var/unsigned/example.com"
    assert a.paths.unsigned_zone(".") == tmp_path / "nodes/a/var/unsigned/root"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_csk_policy_refused_with_the_ods_reason() -> None:
    (problem,) = problems(GOOD + '[policy]\nkeys = "csk"\n')
    assert problem.startswith(
        "[policy.keys] 'csk' cannot work with OpenDNSSEC 2.1.12: its key import gives a CSK"
    )


SYSTEM = GOOD.replace('base_dir = "nodes/a"', 'base_dir = "/var/lib/ods-duo"\nlayout = "system"')


def test_system_layout_uses_debian_paths_on_the_real_root(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(SYSTEM)
    a = load_config(path).nodes["a"]
    assert a.config.layout == "system"
    assert a.paths.conf_xml == Path("/etc/opendnssec/conf.xml")
    assert a.paths.kasp_db == Path("/var/lib/opendnssec/kasp.db")
    assert a.paths.signconf("example.com") == Path("/var/lib/opendnssec/signconf/example.com.xml")
    assert a.paths.unsigned_zone("example.com") == Path("/var/lib/opendnssec/unsigned/example.com")
    assert a.paths.softhsm_conf == Path("/etc/softhsm/softhsm2.conf")
    assert a.paths.tokens == Path("/var/lib/softhsm/tokens")
    assert a.paths.signer_sock == Path("/run/opendnssec/engine.sock")
    assert a.paths.namespace is False  # the machine's own /run/opendnssec
    assert a.pin_file == Path("/var/lib/ods-duo/secrets/pin")  # ods-duo's own files stay in base_dir
    assert load_config(path).nodes["b"].paths.namespace is True  # the lab layout is unchanged


def test_system_layout_under_a_root_prefix(tmp_path: Path) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(SYSTEM.replace('layout = "system"', 'layout = "system"\nroot = "sysroot"'))
    a = load_config(path).nodes["a"]
    root = tmp_path / "sysroot"
    assert a.paths.conf_xml == root / "etc/opendnssec/conf.xml"
    assert a.paths.enforcer_sock == root / "run/opendnssec/enforcer.sock"
    assert a.paths.tokens == root / "var/lib/softhsm/tokens"
    # Not the machine's /run/opendnssec: the daemons get ROOT/run/opendnssec bind-mounted there.
    assert a.paths.namespace is True


def test_layout_is_checked() -> None:
    assert any(
        "layout" in p for p in problems(GOOD.replace('token_label = "A"', 'token_label = "A"\nlayout = "x"'))
    )


def test_input_limits_default_and_configurable() -> None:
    config = parse_config(GOOD, "duo.toml")
    assert (config.input.max_bytes, config.input.max_records) == (512 * 1024 * 1024, 1_000_000)
    config = parse_config(GOOD + "[input]\nmax_records = 5000\nmax_bytes = 1048576\n", "duo.toml")
    assert (config.input.max_bytes, config.input.max_records) == (1_048_576, 5000)
    assert problems(GOOD + "[input]\nmax_records = 0\n") == [
        "[input.max_records] Input should be greater than or equal to 1"
    ]
