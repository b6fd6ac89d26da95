"""Output a person reads and the conventions every command follows (issue 17), without daemons:
the real command line over FakeNodes, or the real process where the error path is the subject."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from duo_ods.check.model import Problem, ZoneReport
from duo_ods.check.output import as_table, explain_unkeyed
from duo_ods.cli import backup as backup_cli
from duo_ods.cli import check as check_cli
from duo_ods.cli import context as context_cli
from duo_ods.cli import key as key_cli
from duo_ods.cli import lab as lab_cli
from duo_ods.cli import zone as zone_cli
from duo_ods.cli.main import USAGE_EXIT, cli, error_line
from duo_ods.cli.text import field_lines, human, once
from duo_ods.errors import ConfigError
from duo_ods.process import python_module
from duo_ods.protocol import ops as P
from duo_ods.zones.manage import ZoneAddResult
from tests.support.configs import TWO_NODES
from tests.support.fake_nodes import FakeNodes

ROOT = Path(__file__).resolve().parents[3]
PYTHON_VALUE = re.compile(r"None|True|False|\{'|\['|'\]")


class _Nodes(FakeNodes):
    """FakeNodes as the command's whole transport, which the command closes at its end."""

    def close(self) -> None:
        pass


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    nodes = _Nodes()
    zones = {"a": ["example.test"], "b": ["example.test"]}
    nodes.on(
        P.ZONE_LIST,
        lambda node, _r: P.ZoneListReply(
            node=node, zones=[P.ZoneEntry(name=z, policy="lab", next_change="soon") for z in zones[node]]
        ),
    )
    monkeypatch.setattr(context_cli, "transport_for", lambda duo, verbose=False: nodes)
    return nodes


def run(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(tmp_path / "duo.toml"), *args])


def duo_process(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real process: main()'s error and usage paths are the subject."""
    env = {k: v for k, v in os.environ.items() if k != "ODS_DUO_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [*python_module("duo_ods"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


# --json and -v after the command


def test_json_after_the_command_is_the_same_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"lab_dir": "L", "config": "C", "input_dir": "I", "nodes": [], "secondaries": []}
    monkeypatch.setattr(lab_cli.lab_impl, "status", lambda lab_dir: status)
    before = CliRunner().invoke(cli, ["--json", "lab", "status", "--dir", str(tmp_path)])
    after = CliRunner().invoke(cli, ["lab", "status", "--dir", str(tmp_path), "--json"])
    assert before.exit_code == after.exit_code == 0, after.output
    assert json.loads(after.output) == json.loads(before.output) == status
    text = CliRunner().invoke(cli, ["lab", "status", "--dir", str(tmp_path)])
    assert text.output.startswith("lab in L\n")


def test_check_json_after_the_command(
    tmp_path: Path, fake: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = ZoneReport("example.test", serials={"a": 1, "b": 1}, signatures={"a": 5, "b": 5})
    monkeypatch.setattr(check_cli, "check_duo", lambda *a, **k: [report])
    result = run(tmp_path, "check", "--json", "-v")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["zones"]["example.test"]["serials"] == {"a": 1, "b": 1}


def test_every_command_takes_json_and_verbose_after_it() -> None:
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        leaves = list(command.commands.values()) if isinstance(command, click.Group) else [command]
        for leaf in leaves:
            flags = {opt for p in leaf.params for opt in p.opts}
            assert {"--json", "-v", "--verbose"} <= flags, f"{name} {leaf.name}"


# Text without Python values, without doubled prefixes


def test_human_values() -> None:
    assert human(None) == "-" and human(True) == "yes" and human(False) == "no"
    assert human({"signerd": 12, "enforcerd": None}) == "signerd 12, enforcerd -"
    assert human(["a.test", "b.test"]) == "a.test, b.test" and human([]) == "none"
    assert field_lines({"has_database": True, "zones": []}) == "has database: yes\nzones: none"


def test_node_status_shows_no_python_values(tmp_path: Path, fake: FakeNodes) -> None:
    fake.on(
        P.STATUS,
        lambda node, _r: P.StatusReply(
            node=node,
            address="127.0.0.12",
            port=53,
            initialised=True,
            has_database=False,
            daemons={"signerd": None, "enforcerd": 4242},
            input_dir="/in",
            zones=["x.test", "y.test"],
        ),
    )
    result = run(tmp_path, "node", "status", "b")
    assert result.exit_code == 0, result.output
    assert not PYTHON_VALUE.search(result.output), result.output
    assert "daemons: signerd not running, enforcerd 4242" in result.output
    assert "zones: x.test, y.test" in result.output and "initialised: yes" in result.output


def test_a_node_is_named_once() -> None:
    assert once("node b: node b: enforcer is not running") == "node b: enforcer is not running"
    assert once("node b: zone x: node a: y") == "node b: zone x: node a: y"
    report = ZoneReport(
        "x.test", problems=[Problem("warning", "b", "its enforcer does not answer (node b: down)")]
    )
    assert "    warning: [b] its enforcer does not answer (down)" in as_table([report]).splitlines()


def test_an_error_line_names_ods_duo_once() -> None:
    line = error_line(ConfigError("no config", ["give --config FILE"]))
    assert line == "ods-duo: error: no config: give --config FILE"


def test_no_config_is_one_line_without_a_doubled_prefix(tmp_path: Path) -> None:
    proc = duo_process(tmp_path, "zone", "list")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "ods-duo: error: no config: give --config FILE or set ODS_DUO_CONFIG (or run lab up)"
    ]


def test_zone_list_names_a_down_node_once(tmp_path: Path, fake: FakeNodes) -> None:
    fake.fail.add(("b", P.ZONE_LIST))
    result = run(tmp_path, "zone", "list")
    assert "node b: DOWN or unreachable: zone-list failed" in result.output, result.output
    assert result.output.count("node b:") == 1


# Usage errors: one exit code, the README's


@pytest.mark.parametrize(
    "args",
    [
        ("key", "create", "example.test", "--role", "csk"),
        ("check", "example.test", "--source", "127.0.0.1:70000"),
        ("check", "example.test", "--source", "127.0.0.1:0"),
        ("lab", "up", "--base-address", "10.0.0.1"),
        ("lab", "up", "--base-address", "nosuch"),
        ("lab", "up", "--port", "70000"),
        ("zone", "level", "--max-spread", "-1"),
        ("zone", "nosuch"),
        ("key", "create"),
        ("check", "--nosuch"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    proc = duo_process(tmp_path, "--config", "duo.toml", *args)
    assert proc.returncode == USAGE_EXIT == 2, proc
    assert "Usage: " in proc.stderr and "Error: " in proc.stderr and proc.stdout == ""


def test_the_readme_states_the_usage_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"{USAGE_EXIT} a usage error" in readme


def test_csk_is_not_offered() -> None:
    result = CliRunner().invoke(cli, ["key", "create", "--help"])
    assert "[pair|ksk|zsk]" in result.output and "csk" not in result.output


# Unknown zones are errors


def test_zone_level_of_an_unknown_zone_is_an_error(tmp_path: Path, fake: FakeNodes) -> None:
    result = run(tmp_path, "zone", "level", "nosuch.test")
    assert result.exit_code == 1
    assert "zone nosuch.test: on no node" in str(result.exception)


def test_key_ds_of_an_unknown_zone_is_an_error(tmp_path: Path, fake: FakeNodes) -> None:
    result = run(tmp_path, "key", "ds", "nosuch.test")
    assert result.exit_code == 1
    assert "zone nosuch.test: on no node" in str(result.exception)
    assert all(op is P.ZONE_LIST for op in fake.ops_called())  # refused before any key was read


# zone add: an existing zone names zone update; a zone without keys names key create


def test_adding_an_existing_zone_names_zone_update(tmp_path: Path, fake: FakeNodes) -> None:
    zone_file = tmp_path / "example.test"
    zone_file.write_text("$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 192.0.2.1\n")
    result = run(tmp_path, "zone", "add", "example.test", "--file", str(zone_file))
    assert result.exit_code == 1
    assert "ods-duo zone update example.test --file FILE" in str(result.exception)
    batch = run(tmp_path, "zone", "add", str(zone_file))
    assert batch.exit_code == 1 and "ods-duo zone update example.test --file FILE" in batch.output


def test_a_zone_added_without_keys_says_key_create_is_next(
    tmp_path: Path, fake: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = ZoneAddResult("new.test", 1, 3, 0, added_on=["a", "b"])
    monkeypatch.setattr(zone_cli, "add_zone", lambda *a: added)
    monkeypatch.setattr(zone_cli, "_returning", lambda *a, **k: {})
    result = run(tmp_path, "zone", "add", "new.test", "--file", "f")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "zone new.test has no keys yet: not signed nor served; next: ods-duo key create new.test"
    )


def test_check_of_a_zone_without_keys_says_so() -> None:
    copies = [
        Problem(
            "critical", "a", "no AXFR of new.test from 127.0.0.11 port 53: not signed with the transfer key"
        ),
        Problem(
            "critical", "ns1", "no AXFR of new.test from 127.0.0.13 port 53: Zone transfer error: NOTAUTH"
        ),
        Problem("warning", "b", "its enforcer does not answer"),
    ]
    reports = [ZoneReport("new.test", problems=copies), ZoneReport("example.test", problems=copies[:1])]
    out = explain_unkeyed(reports, {"new.test"})
    messages = [p.message for p in out[0].problems]
    assert (
        messages[0].startswith("zone new.test has no keys yet")
        and "ods-duo key create new.test" in messages[0]
    )
    assert not any("transfer key" in m or "NOTAUTH" in m for m in messages)
    assert messages[1:] == ["its enforcer does not answer"]
    assert out[1] is reports[1]  # a zone with keys: its problems are its own


# key list, lab status, check table


def test_key_list_shows_the_ksk_first(
    tmp_path: Path, fake: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def row(zone: str, role: str, tag: int) -> dict[str, Any]:
        return {"zone": zone, "role": role, "keytag": tag, "locator": f"{zone}{role}", "differs": False,
                "nodes": {"a": {"state": "ready"}, "b": {"state": "ready"}}}  # fmt: skip

    rows = [
        row("b.test", "ZSK", 1),
        row("a.test", "ZSK", 7),
        row("a.test", "KSK", 9),
        row("b.test", "KSK", 2),
    ]
    monkeypatch.setattr(key_cli, "list_keys", lambda *a: rows)
    lines = run(tmp_path, "key", "list").output.splitlines()[1:]
    assert [(line.split()[0], line.split()[1]) for line in lines] == [
        ("a.test", "KSK"), ("a.test", "ZSK"), ("b.test", "KSK"), ("b.test", "ZSK"),
    ]  # fmt: skip


def test_lab_status_labels_its_dates() -> None:
    status = {
        "lab_dir": "L", "config": "C", "input_dir": "I", "secondaries": [],
        "nodes": [{"name": "a", "address": "127.0.0.11", "port": 53, "daemons": {"signerd": 1},
                   "zones": [{"name": "example.test", "next_change": "Sun Nov 29 12:29:41 2026"}],
                   "error": "node a: enforcer is not running"}],
    }  # fmt: skip
    text = lab_cli._describe(status)
    assert "zone example.test: next key change Sun Nov 29 12:29:41 2026" in text
    assert "error: enforcer is not running" in text and "node a: enforcer" not in text


def test_check_columns_stay_aligned_with_four_copies() -> None:
    four = {"a": 2026112901, "b": 2026112901, "ns1": 2026112901, "ns2": 2026112901}
    reports = [
        ZoneReport("example.test", serials=four, signatures=dict.fromkeys(four, 23)),
        ZoneReport("a-much-longer-zone-name.example.test"),
    ]
    lines = as_table(reports).splitlines()
    start = lines[0].index("SIGNATURES")
    assert lines[1][start:].startswith("a=23") and lines[1][start - 1] == " "
    serials = lines[0].index("SERIALS")
    assert lines[2][start] == "-" and lines[2][serials] == "-" and lines[2][serials - 1] == " "


# backup list and prune agree


def test_backup_list_marks_the_keys_prune_finds_dead(
    tmp_path: Path, fake: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bundle(locator: str) -> dict[str, Any]:
        return {"zone": "x.test", "role": "KSK", "keytag": 1, "locator": locator, "age_days": 1.0,
                "in_hsm": [], "in_enforcer": [], "dead_since": None}  # fmt: skip

    dead = {"dead1": 1764400000.0}
    monkeypatch.setattr(backup_cli, "backup_list", lambda *a: [bundle("dead1"), bundle("live1")])
    plan = {"removed": [], "dead": dead, "undecided": None, "dry_run": True}
    monkeypatch.setattr(backup_cli, "prune", lambda duo, client, dry_run: plan)
    rows = json.loads(run(tmp_path, "--json", "backup", "list").output)["bundles"]
    assert {r["locator"] for r in rows if r["dead"]} == set(dead)
    text = run(tmp_path, "backup", "list").output.splitlines()
    assert "2025-11-29 07:06" in text[1] and text[2].split()[4] == "-"


# --help and the README's command list


def _readme_commands() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Commands\n\n```\n")
    return readme[start : readme.index("```", start + 20)]


def test_help_and_the_readme_command_list_match() -> None:
    listed = _readme_commands()
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        subs = command.commands if isinstance(command, click.Group) else {"": command}
        for sub_name, sub in subs.items():
            if sub.hidden:
                continue
            assert re.search(rf"\b{name}\b[^\n]*{re.escape(sub_name)}", listed) or (
                sub_name and re.search(rf"\b{name} [a-z|-]*\b{re.escape(sub_name)}\b", listed)
            ), f"{name} {sub_name} is not in the README's command list"
            for param in sub.params:
                if (
                    isinstance(param, click.Option)
                    and not param.hidden
                    and param.name not in ("json", "verbose")
                ):
                    assert any(opt in listed for opt in param.opts), f"{name} {sub_name}: {param.opts}"
                if isinstance(param, click.Option) and isinstance(param.type, click.Choice):
                    for choice in param.type.choices:
                        assert str(choice) in listed, f"{name} {sub_name} {param.opts[0]} {choice}"
    assert "ODS_DUO_CONFIG" in listed


def test_catalog_output_for_the_other_transfer_mode_is_refused(tmp_path: Path, fake: FakeNodes) -> None:
    """The relays serve the catalogs of the config's mode: a failover secondary of a split duo would
    learn each catalog from one relay only and never fail over (found by the three-signer work)."""
    (tmp_path / "duo.toml").write_text(TWO_NODES + '[transfer]\nmode = "split"\n')
    result = run(tmp_path, "bind-config", "--mode", "failover")
    assert result.exit_code == 2
    assert "--mode failover: the relays serve catalog zones for the config's transfer.mode (split)" in (
        result.output
    )
    assert "render failover with --zones" in result.output
