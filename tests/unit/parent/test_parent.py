"""The parent: which one a zone has, what its agents' answers allow, submissions and their retries."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import dns.rdata
import pytest
from dns.rdtypes.ANY.DS import DS

from duo_ods.config.load import load_config
from duo_ods.errors import ConfigError
from duo_ods.parent.agents import all_serve, ds_key, mismatches, none_serve
from duo_ods.parent.config import parent_for, parent_zone_of
from duo_ods.parent.ledger import Ledger, Submission, due
from duo_ods.parent.submit import SubmitError, run_command
from tests.support.configs import TWO_NODES

NEW = "12 13 2 " + "ab" * 32
OLD = "11 13 2 " + "cd" * 32
PARENTS = """
[parents."*"]
agents = ["127.0.12.5", "127.0.12.6:5353"]
update_server = "127.0.12.5"
tsig_key_file = "secrets/parent.key"

[parents."other.test"]
agents = ["[::1]:53"]
submit_command = ["/bin/true"]
"""


def ds(text: str) -> DS:
    rdata = dns.rdata.from_text("IN", "DS", text)
    assert isinstance(rdata, DS)
    return rdata


def test_views_allow_seen_only_when_every_agent_serves_it() -> None:
    assert all_serve({"p1": frozenset({OLD, NEW}), "p2": frozenset({NEW})}, NEW).ok
    held = all_serve({"p1": frozenset({OLD, NEW}), "p2": frozenset({OLD})}, NEW)
    assert not held.ok and "p2 does not serve DS 12 (serves 11)" in held.problems[0]
    assert not all_serve({"p1": frozenset({NEW}), "p2": "no answer (Timeout)"}, NEW).ok
    wrong = all_serve({"p1": frozenset({"12 13 2 " + "00" * 32})}, NEW)
    assert not wrong.ok and "serves 12 with another digest" in wrong.problems[0]
    assert not all_serve({}, NEW).ok  # no agent: nothing can be confirmed


def test_views_allow_gone_only_when_no_agent_serves_it() -> None:
    assert none_serve({"p1": frozenset({NEW}), "p2": frozenset()}, OLD).ok
    assert not none_serve({"p1": frozenset({NEW}), "p2": frozenset({OLD})}, OLD).ok
    assert not none_serve({"p1": "answers REFUSED"}, OLD).ok


def test_mismatches_name_what_is_lacking_and_what_is_unknown() -> None:
    [line] = mismatches({"p1": frozenset({OLD})}, [NEW])
    assert "lacks key tag 12" in line and "unknown key tag 11" in line
    assert mismatches({"p1": frozenset({NEW})}, [NEW]) == []


def test_ds_key_ignores_case_and_ttl() -> None:
    assert ds_key(ds("12 13 2 " + "AB" * 32)) == NEW


def test_parent_per_zone_over_the_default(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(TWO_NODES + PARENTS)
    duo = load_config(tmp_path / "duo.toml")
    default = parent_for(duo, "Example.Test.")
    assert default is not None and default.parent_zone == "test"
    assert default.agents == [("127.0.12.5", 53), ("127.0.12.6", 5353)]
    assert default.tsig_key_file == tmp_path / "secrets" / "parent.key"
    other = parent_for(duo, "other.test")
    assert other is not None and other.agents == [("::1", 53)] and other.update_server is None
    assert parent_zone_of("test") == "."


def test_an_update_server_without_a_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(
        TWO_NODES + '\n[parents."*"]\nagents = ["127.0.0.1"]\nupdate_server = "127.0.0.1"\n'
    )
    with pytest.raises(ConfigError, match="tsig_key_file"):
        load_config(tmp_path / "duo.toml")


def test_no_parent_without_an_entry(tmp_path: Path) -> None:
    (tmp_path / "duo.toml").write_text(TWO_NODES)
    assert parent_for(load_config(tmp_path / "duo.toml"), "example.test") is None


def test_a_submit_command_gets_the_ds_on_stdin_and_a_failure_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "got"
    script = tmp_path / "submit"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        f"open({str(out)!r}, 'w').write(os.environ['ODS_DUO_ACTION'] + ' ' + sys.stdin.read())\n"
        "sys.exit(int(os.environ.get('FAIL', '0')))\n"
    )
    script.chmod(stat.S_IRWXU)
    (tmp_path / "duo.toml").write_text(
        TWO_NODES + f'\n[parents."*"]\nagents = ["127.0.0.1"]\nsubmit_command = ["{script}"]\n'
    )
    parent = parent_for(load_config(tmp_path / "duo.toml"), "example.test")
    assert parent is not None
    run_command(parent, "add", 12, ds(NEW))
    assert out.read_text() == f"add example.test. IN DS {ds(NEW).to_text()}\n"
    failing = parent.__class__(
        **{**parent.__dict__, "submit_command": [sys.executable, "-c", "import sys; sys.exit('no')"]}
    )
    with pytest.raises(SubmitError, match="exited 1: no"):
        run_command(failing, "remove", 12, ds(NEW))


def test_a_failed_submission_is_retried_after_the_retry_time(tmp_path: Path) -> None:
    assert due(None, 0, 60)
    failed = Submission("example.test", 12, "add", attempts=1, last_try=100.0, error="boom")
    assert not due(failed, 159, 60) and due(failed, 160, 60)
    assert not due(Submission("example.test", 12, "add", done=True), 10**9, 60)
    ledger = Ledger(tmp_path / "parent.json")
    ledger.put(failed)
    again = Ledger(tmp_path / "parent.json").get("example.test", 12, "add")
    assert again == failed
    assert stat.S_IMODE((tmp_path / "parent.json").stat().st_mode) == 0o600
