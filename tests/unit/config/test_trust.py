"""Which config files ods-duo trusts: one it finds by itself only if nobody else can change it, one it is
given unless anyone can, and hsm_module only from a file nobody else can change."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from duo_ods.cli.context import Ctx
from duo_ods.config.load import load_config
from duo_ods.errors import ConfigError
from duo_ods.process import python_module
from tests.support.configs import TWO_NODES

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with ./lab/duo.toml, owner-only writable; no --config, no $ODS_DUO_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ODS_DUO_CONFIG", raising=False)
    (tmp_path / "lab").mkdir(mode=0o755)
    config = tmp_path / "lab" / "duo.toml"
    config.write_text(TWO_NODES)
    config.chmod(0o644)
    return config


def found(config_path: Path | None = None) -> Path:
    return Ctx(config_path=config_path, json=False, verbose=False).find_config()


def refused_found() -> str:
    with pytest.raises(ConfigError) as info:
        found()
    message = str(info.value)
    assert "\n" not in message
    return message


RULE = "a config found without --config must be owned by root or you and writable by nobody else"


def test_own_lab_config_is_found(lab: Path) -> None:
    assert found() == Path("lab/duo.toml")
    assert Ctx(None, False, False).duo.config_path == lab.resolve()


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_found_config_writable_by_others_is_refused(lab: Path, mode: int) -> None:
    lab.chmod(mode)
    assert refused_found() == (
        f"lab/duo.toml: not used: the file is writable by group or others (mode {mode:04o}); {RULE}"
    )


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777])
def test_found_config_in_a_folder_writable_by_others_is_refused(lab: Path, mode: int) -> None:
    lab.parent.chmod(mode)
    assert refused_found() == (
        f"lab/duo.toml: not used: its folder {lab.parent} is writable by group or others "
        f"(mode {mode:04o}); {RULE}"
    )


@root_only
def test_found_config_owned_by_someone_else_is_refused(lab: Path) -> None:
    os.chown(lab, 65534, 65534)
    assert (
        refused_found()
        == f"lab/duo.toml: not used: the file is owned by uid 65534, not by root or you; {RULE}"
    )


def test_found_config_linked_into_a_shared_folder_is_refused(lab: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "duo.toml").write_text(TWO_NODES)
    lab.unlink()
    lab.symlink_to(shared / "duo.toml")
    assert "its folder" in refused_found() and str(shared) in refused_found()


def test_refused_found_config_is_one_line_from_the_cli(lab: Path) -> None:
    lab.chmod(0o666)
    proc = subprocess.run(
        [*python_module("duo_ods"), "zone", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"ods-duo: error: lab/duo.toml: not used: the file is writable by group or others (mode 0666); {RULE}"
    ]


# --- given with --config or $ODS_DUO_CONFIG: the operator's choice, but never a file anyone may write ---


def test_given_config_group_writable_is_the_operators_choice(lab: Path) -> None:
    lab.chmod(0o664)
    lab.parent.chmod(0o775)
    assert found(lab) == lab
    assert load_config(lab).config_path == lab.resolve()


def test_given_config_writable_by_anyone_is_refused(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.chmod(0o666)
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    assert str(info.value) == f"{lab}: not used: the file is writable by anyone (mode 0666)"
    monkeypatch.setenv("ODS_DUO_CONFIG", str(lab))
    with pytest.raises(ConfigError, match="writable by anyone"):
        Ctx(None, False, False).duo  # noqa: B018


def test_given_config_in_a_folder_anyone_may_write(lab: Path) -> None:
    lab.parent.chmod(0o777)
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    assert str(info.value) == f"{lab}: not used: its folder {lab.parent} is writable by anyone (mode 0777)"
    lab.parent.chmod(0o1777)  # like /tmp: nobody may replace another's file there
    assert load_config(lab).config_path == lab.resolve()


def test_missing_given_config_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file or directory"):
        load_config(tmp_path / "nope.toml")


# --- hsm_module: only from a file nobody else can change -------------------------------------------------

MODULE_A = TWO_NODES.replace('token_label = "A"', 'token_label = "A"\nhsm_module = "/tmp/evil.so"')


def test_hsm_module_from_a_group_writable_config_is_refused(lab: Path) -> None:
    lab.write_text(MODULE_A + 'hsm_module = "/tmp/evil2.so"\n')
    lab.chmod(0o664)
    with pytest.raises(ConfigError) as info:
        load_config(lab)
    assert str(info.value) == (
        f"{lab}: [nodes.a.hsm_module, backup.hsm_module] taken only from a config owned by root or you "
        "and writable by nobody else, and the file is writable by group or others (mode 0664)"
    )


def test_hsm_module_from_a_trusted_config_is_taken(lab: Path) -> None:
    lab.write_text(MODULE_A)
    assert load_config(lab).nodes["a"].config.hsm_module == "/tmp/evil.so"


def test_default_hsm_module_needs_no_strict_config(lab: Path) -> None:
    lab.chmod(0o664)
    duo = load_config(lab)
    assert duo.nodes["a"].config.hsm_module == "/usr/lib/softhsm/libsofthsm2.so"
