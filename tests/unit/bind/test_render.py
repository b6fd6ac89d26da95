"""named config rendering with hostile names: refused in one line before anything is written, never
rendered into syntax named-checkconf would read as statements of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from duo_ods.bind.render import (
    check_zones_snippet,
    render_catalog_options,
    render_catalog_zones,
    render_named_conf,
    render_zones,
)
from duo_ods.config.load import load_config, parse_config
from duo_ods.config.resolve import Duo
from duo_ods.dns.tsig import ensure_tsig_key
from duo_ods.errors import ConfigError, RenderError
from duo_ods.render.engine import render

CONFIG = """
[nodes.a]
address = "127.0.0.11"
port = 5301
base_dir = "a"
token_label = "A"
[nodes.b]
address = "127.0.0.12"
port = 5302
base_dir = "b"
token_label = "B"
[backup]
dir = "backup"
[[secondaries]]
name = "s1"
address = "127.0.0.21"
"""

HOSTILE_ZONES = [
    'evil.test"; }; zone "owned',
    "evil.test\nzone x { type primary; };",
    "evil.test; include /etc/shadow",
    "evil.test}",
    "../../etc/x",
    "a/b.test",
    "evil test",
    "évil.test",
    "",
    "a..b",
]
named_checkconf = pytest.mark.skipif(shutil.which("named-checkconf") is None, reason="needs named-checkconf")


@pytest.fixture
def duo(tmp_path: Path) -> Duo:
    (tmp_path / "duo.toml").write_text(CONFIG)
    duo = load_config(tmp_path / "duo.toml")
    ensure_tsig_key(duo.tsig_key_path, "duo-transfer", "hmac-sha256")
    return duo


def refused(call: object) -> str:
    with pytest.raises(RenderError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


def test_zone_statement_exactly(duo: Duo) -> None:
    """Every zone from the relays (the node's relay port, 1053 by default), with the key, AXFR only."""
    text = render_zones(duo, "s1", "split", ["Example.Test.", "."])
    assert 'server 127.0.0.11 {\n\trequest-ixfr no;\n\tkeys { "duo-transfer"; };\n};\n' in text
    zones = text[text.index('zone "') :]
    assert zones == (
        'zone "." {\n'
        "\ttype secondary;\n"
        '\tfile "zones/root.db";\n'
        "\tprimaries {\n"
        '\t\t127.0.0.11 port 1053 key "duo-transfer";  // relay of node a\n'
        "\t};\n"
        "\trequest-ixfr no;\n"
        "\t// The relays, and ods-duo itself (it notifies with the transfer key after an update).\n"
        '\tallow-notify { 127.0.0.11; key "duo-transfer"; };\n'
        "};\n"
        'zone "example.test" {\n'
        "\ttype secondary;\n"
        '\tfile "zones/example.test.db";\n'
        "\tprimaries {\n"
        '\t\t127.0.0.11 port 1053 key "duo-transfer";  // relay of node a\n'
        "\t};\n"
        "\trequest-ixfr no;\n"
        "\t// The relays, and ods-duo itself (it notifies with the transfer key after an update).\n"
        '\tallow-notify { 127.0.0.11; key "duo-transfer"; };\n'
        "};\n"
    )


def test_catalog_statements(duo: Duo) -> None:
    """Failover: one catalog, from relay a then relay b; its members from the same relays."""
    text = render_catalog_zones(duo, "s1", "failover")
    assert 'zone "duo.catalog.invalid" {' in text
    assert text.index("127.0.0.11 port 1053") < text.index("127.0.0.12 port 1053")
    options = render_catalog_options(duo, "s1", "failover", "/var/cache/bind/catz")
    assert 'zone "duo.catalog.invalid"' in options and "request-ixfr no;" in options
    assert '127.0.0.12 port 1053 key "duo-transfer";' in options


@named_checkconf
def test_catalog_statements_pass_named_checkconf(duo: Duo) -> None:
    zones = render_catalog_zones(duo, "s1", "failover")
    check_zones_snippet(duo, zones, duo.tsig_key_path, render_catalog_options(duo, "s1", "failover", "/tmp"))


@named_checkconf
def test_good_names_pass_named_checkconf(duo: Duo) -> None:
    check_zones_snippet(duo, render_zones(duo, "s1", "failover", ["example.test", "_tcp.example.test"]),
                        duo.tsig_key_path)  # fmt: skip


@pytest.mark.parametrize("zone", HOSTILE_ZONES)
def test_hostile_zone_name_refused(duo: Duo, zone: str) -> None:
    message = refused(lambda: render_zones(duo, "s1", "failover", ["good.test", zone]))
    assert message == f"zone name {zone!r} cannot go into a named config: not a plain DNS name"


@named_checkconf
def test_hostile_zone_name_would_have_been_syntax(duo: Duo, tmp_path: Path) -> None:
    """Why the check matters: the unchecked template takes the name into the config's syntax (an
    extra zone statement here, which named-checkconf accepts as if it were the operator's)."""
    hostile = 'evil.test" { type secondary; primaries { 127.0.0.1; }; };\nzone "injected.test'
    server = {"node": "a", "address": "127.0.0.11", "port": 5301}
    text = render("named-zones.conf.j2", {
        "secondary": "s1", "mode": "failover", "servers": [server], "key_name": "duo-transfer",
        "zones": [{"name": hostile, "file": "zones/x.db"}],
    })  # fmt: skip
    assert 'zone "injected.test"' in text
    check_zones_snippet(duo, text, duo.tsig_key_path)  # the owner's checker cannot tell
    with pytest.raises(RenderError):
        render_zones(duo, "s1", "failover", [hostile])


def test_hostile_key_name_refused_by_the_config() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG + '[transfer]\nkey_name = "duo\\"; }; key \\"x"\n', "duo.toml")
    assert info.value.problems == [
        "[transfer.key_name] 'duo\"; }; key \"x' is not a key name (a DNS name: letters, digits, '-', '_' "
        "and dots)"
    ]


def test_hostile_key_name_refused_at_render_too(duo: Duo, tmp_path: Path) -> None:
    """A name that got past the config some other way is still refused where it would be rendered."""
    object.__setattr__(duo.config.transfer, "key_name", 'duo"; };')
    expected = "key name 'duo\"; };' cannot go into a named config: not a plain DNS name"
    assert refused(lambda: render_zones(duo, "s1", "failover", ["good.test"])).startswith(expected)

    def conf() -> str:
        return render_named_conf(
            duo, "s1", tmp_path, tmp_path / "k", tmp_path / "z", options_file=tmp_path / "o"
        )

    assert refused(conf).startswith(expected)


@pytest.mark.parametrize("bad", ['sec"; };', "sec\n}", "sec\\x"])
def test_hostile_paths_refused(duo: Duo, tmp_path: Path, bad: str) -> None:
    good = tmp_path / "ok"
    message = refused(lambda: render_named_conf(duo, "s1", tmp_path / bad, good, good, options_file=good))
    assert message == (
        f"secondary s1 folder {str(tmp_path / bad)!r} cannot go into a named config: "
        "it holds a quote, a backslash or a control character"
    )
    assert refused(
        lambda: render_named_conf(duo, "s1", good, tmp_path / bad, good, options_file=good)
    ).startswith("transfer key file")
    assert refused(
        lambda: render_named_conf(duo, "s1", good, good, tmp_path / bad, options_file=good)
    ).startswith("secondary s1 zones file")
    assert refused(lambda: check_zones_snippet(duo, "", tmp_path / bad)).startswith("transfer key file")


def test_spaces_and_braces_in_a_path_are_fine_inside_quotes(duo: Duo, tmp_path: Path) -> None:
    folder = tmp_path / "my {lab}; dir"
    text = render_named_conf(duo, "s1", folder, folder / "k", folder / "z", options_file=folder / "o")
    assert f'directory "{folder}";' in text


def test_hostile_secondary_name_and_mode_refused(duo: Duo) -> None:
    with pytest.raises(RenderError, match="mode 'both'"):
        render_zones(duo, "s1", "both", [])
    object.__setattr__(duo.config.secondaries[0], "name", "s1\n};")
    assert refused(lambda: render_zones(duo, "s1\n};", "failover", [])).startswith("secondary name")
