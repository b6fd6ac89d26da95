"""`python -m duo_ods` started by ods-duo must import the installed package, never a `duo_ods/`
folder that happens to be in the working directory (issue 14)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import duo_ods
from duo_ods import process
from duo_ods.transport import local

DECOY = "raise SystemExit('decoy duo_ods imported')\n"
ROOT = Path(duo_ods.__file__).resolve().parent.parent


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """A working directory holding a `duo_ods/` package that fails loudly when imported."""
    package = tmp_path / "duo_ods"
    (package / "node").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py", "node/__init__.py", "node/nsexec.py"):
        (package / name).write_text(DECOY)
    return tmp_path


def test_python_module_ignores_a_decoy_in_the_working_directory(decoy: Path) -> None:
    safe = subprocess.run(
        [*process.python_module("duo_ods"), "--help"],
        cwd=decoy, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert safe.returncode == 0, safe.stderr
    assert "decoy" not in safe.stderr and "Usage:" in safe.stdout
    # the bare form really does pick the decoy up: what the -P guards against
    bare = subprocess.run(
        [sys.executable, "-m", "duo_ods", "--help"],
        cwd=decoy, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bare.returncode != 0 and "decoy duo_ods imported" in bare.stderr


def test_the_namespace_helper_ignores_a_decoy(decoy: Path) -> None:
    safe = subprocess.run(
        [*process.python_module("duo_ods.node.nsexec"), "--help"],
        cwd=decoy, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "decoy" not in safe.stderr


def test_local_agents_start_through_python_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(local, "Agent", lambda node, argv, where: started.append(argv))
    local.LocalTransport(tmp_path / "duo.toml")._start("a")
    assert started[0][:4] == process.python_module("duo_ods")
    assert "-P" in started[0]


def test_nothing_else_spells_python_dash_m() -> None:
    """Every `python -m` ods-duo or its tests start goes through process.python_module."""
    pattern = re.compile(r"sys\.executable,\s*\"-m\"")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("duo_ods", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text()) and path != Path(__file__).resolve()
    ]
    assert offenders == []
