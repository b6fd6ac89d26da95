"""Every package of duo_ods is shipped: an editable install finds a package missing from pyproject's
list, a wheel (the container images, `pip install .`) does not."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_duo_ods_is_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "duo_ods").rglob("__init__.py")
    }
    assert found, "no package found: the test looks in the wrong place"
    assert found - listed == set(), f"missing from pyproject.toml's packages: {sorted(found - listed)}"
