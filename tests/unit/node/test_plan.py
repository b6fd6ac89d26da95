"""node init's plan for a system node: pure, from wanted state and an observed snapshot."""

from pathlib import Path

import pytest

from duo_ods.errors import NodeError
from duo_ods.node.plan import (
    Note,
    Observed,
    PathState,
    Perms,
    UnitState,
    Want,
    WantAbsent,
    WantDatabase,
    WantDir,
    WantFile,
    WantSecret,
    WantToken,
    WantUnit,
    digest,
    format_plan,
    pending,
    plan_steps,
)

ODS_DIR = Perms("root", "opendnssec", 0o770)
CONF = Perms("root", "opendnssec", 0o640)
SECRET = Perms("root", "root", 0o600)
ETC = Path("/r/etc/opendnssec")


def wants(conf_text: str = "<Configuration/>") -> list[Want]:
    return [
        WantDir(ETC, ODS_DIR),
        WantSecret(Path("/r/secrets/pin"), "1234\n", SECRET),
        WantToken(
            "DUO-A", Path("/r/etc/softhsm/softhsm2.conf"), Path("/r/tokens"), Path("/r/pin"), Path("/r/so")
        ),
        WantDatabase(Path("/r/var/kasp.db"), Perms("opendnssec", "opendnssec", 0o640)),
        WantFile(ETC / "conf.xml", conf_text, CONF, "conf", restarts=True),
        WantAbsent(ETC / "prevent-startup", "Debian's flag"),
        WantUnit("opendnssec-signer.service"),
        WantUnit("opendnssec-enforcer.service"),
    ]


def matching(conf_text: str = "<Configuration/>") -> Observed:
    """What a finished init leaves behind."""
    return Observed(
        paths={
            ETC: PathState("dir", ODS_DIR),
            Path("/r/secrets/pin"): PathState("file", SECRET, digest("1234\n")),
            Path("/r/var/kasp.db"): PathState("file", Perms("opendnssec", "opendnssec", 0o640), "x"),
            ETC / "conf.xml": PathState("file", CONF, digest(conf_text)),
        },
        tokens=frozenset({"DUO-A"}),
        databases={Path("/r/var/kasp.db"): 1},
        units={
            u: UnitState(enabled=True, active=True)
            for u in ("opendnssec-signer.service", "opendnssec-enforcer.service")
        },
    )


def test_fresh_machine_creates_everything_in_order() -> None:
    steps = plan_steps(wants(), Observed())
    assert [(s.action, s.kind) for s in steps] == [
        ("create", "dir"),
        ("create", "secret"),
        ("create", "token"),
        ("create", "database"),
        ("create", "file"),
        ("ok", "file"),  # prevent-startup is absent already
        ("enable", "unit"),
        ("start", "unit"),
        ("enable", "unit"),
        ("start", "unit"),
    ]
    assert [s.target for s in steps if s.kind == "unit"] == [
        "opendnssec-signer.service", "opendnssec-signer.service",
        "opendnssec-enforcer.service", "opendnssec-enforcer.service",
    ]  # fmt: skip
    assert len(pending(steps)) == 9


def test_finished_init_has_nothing_to_do() -> None:
    steps = plan_steps(wants(), matching())
    assert pending(steps) == []
    assert {s.action for s in steps} == {"ok"}
    assert format_plan(steps).endswith("nothing to do: everything matches")


def test_changed_conf_is_rewritten_and_running_units_restart() -> None:
    steps = plan_steps(wants("<Configuration>new</Configuration>"), matching())
    assert [(s.action, s.target) for s in pending(steps)] == [
        ("update", str(ETC / "conf.xml")),
        ("restart", "opendnssec-signer.service"),
        ("restart", "opendnssec-enforcer.service"),
    ]


def test_wrong_mode_or_owner_is_fixed_without_rewriting() -> None:
    seen = matching()
    paths = dict(seen.paths)
    paths[ETC / "conf.xml"] = PathState("file", Perms("root", "root", 0o644), digest("<Configuration/>"))
    steps = pending(plan_steps(wants(), Observed(paths, seen.tokens, seen.databases, seen.units)))
    assert [(s.action, s.target) for s in steps] == [("chmod", str(ETC / "conf.xml"))]
    assert steps[0].detail == "root:root 0644 -> root:opendnssec 0640"


def test_existing_secret_is_kept_whatever_it_holds() -> None:
    seen = matching()
    paths = dict(seen.paths)
    paths[Path("/r/secrets/pin")] = PathState("file", SECRET, digest("another PIN\n"))
    steps = plan_steps(wants(), Observed(paths, seen.tokens, seen.databases, seen.units))
    assert pending(steps) == []


def test_prevent_startup_is_removed_and_stopped_unit_started() -> None:
    seen = matching()
    paths = dict(seen.paths)
    paths[ETC / "prevent-startup"] = PathState("file", CONF, "y")
    units = dict(seen.units)
    units["opendnssec-enforcer.service"] = UnitState(enabled=True, active=False)
    steps = pending(plan_steps(wants(), Observed(paths, seen.tokens, seen.databases, units)))
    assert [(s.action, s.target) for s in steps] == [
        ("remove", str(ETC / "prevent-startup")),
        ("start", "opendnssec-enforcer.service"),
    ]


def test_missing_token_is_created() -> None:
    seen = matching()
    steps = pending(
        plan_steps(wants(), Observed(seen.paths, frozenset({"OTHER"}), seen.databases, seen.units))
    )
    assert [(s.action, s.kind, s.target) for s in steps] == [("create", "token", "DUO-A")]


def test_file_where_a_folder_belongs_is_refused() -> None:
    with pytest.raises(NodeError, match="is a file, not a dir"):
        plan_steps(wants(), Observed(paths={ETC: PathState("file", CONF, "z")}))


def test_database_that_is_not_the_enforcers_is_refused() -> None:
    seen = matching()
    with pytest.raises(NodeError, match="not an enforcer database"):
        plan_steps(wants(), Observed(seen.paths, seen.tokens, {Path("/r/var/kasp.db"): None}, seen.units))


def test_note_is_shown_but_is_no_step() -> None:
    steps = plan_steps([Note("daemons", "no systemd here")], Observed())
    assert pending(steps) == []
    assert "note     daemons   no systemd here" in format_plan(steps)
