"""Whether a config file may be trusted, from its owner and mode and those of its folder.

A config says which PKCS#11 module every node process loads (`hsm_module`: code run as root with the
token's PIN), which commands run and where keys go. So:

- A config ods-duo finds by itself (./lab/duo.toml in the working directory, /etc/ods-duo/duo.toml) is
  used only if it and its folder are owned by root or the current user and writable by nobody else
  (strict): a file planted in a folder the operator happens to `cd` into must not run anything.
- A config given with --config or $ODS_DUO_CONFIG is the operator's choice; it is still refused when
  anyone may write it (the file, or its folder without the sticky bit): that is never what was meant.
- A config that sets `hsm_module` (any node, or the backup) must pass the strict rule however it was
  given; the module path is taken only from a file that only root or the operator can change.

Links are followed: the file that is read and its folder are checked, and the folder of the path as
given. Only stat() is used; nothing is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from duo_ods.errors import ConfigError

STRICT_RULE = "owned by root or you and writable by nobody else"


def _places(path: Path) -> list[tuple[str, Path]]:
    """The file and the folders whose owner and mode decide who can change what is read."""
    real = path.resolve()
    places = [("the file", real), ("its folder", real.parent)]
    given_folder = path.absolute().parent.resolve()
    if given_folder != real.parent:
        places.append(("the folder of the link", given_folder))
    return places


def trust_problem(path: Path, *, strict: bool) -> str | None:
    """Why `path` is not to be trusted under the strict or the lenient rule, or None.

    A file that cannot be looked at is not a trust problem: reading it reports that.
    """
    for what, place in _places(path):
        try:
            st = place.stat()
        except OSError:
            return None
        mode = st.st_mode
        is_folder = stat.S_ISDIR(mode)
        shown = f"{what} {place}" if what != "the file" else "the file"
        if strict:
            if st.st_uid not in (0, os.geteuid()):
                return f"{shown} is owned by uid {st.st_uid}, not by root or you"
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                return f"{shown} is writable by group or others (mode {stat.S_IMODE(mode):04o})"
        elif mode & stat.S_IWOTH and not (is_folder and mode & stat.S_ISVTX):
            return f"{shown} is writable by anyone (mode {stat.S_IMODE(mode):04o})"
    return None


def require_found_config_trusted(path: Path) -> None:
    """For a config ods-duo found by itself: the strict rule, else a one-line ConfigError."""
    problem = trust_problem(path, strict=True)
    if problem:
        raise ConfigError(
            str(path),
            [f"not used: {problem}; a config found without --config must be {STRICT_RULE}"],
        )


def require_given_config_trusted(path: Path) -> None:
    """For a config given with --config or $ODS_DUO_CONFIG: refused only when anyone may change it."""
    problem = trust_problem(path, strict=False)
    if problem:
        raise ConfigError(str(path), [f"not used: {problem}"])


def require_trusted_for(path: Path, settings: list[str]) -> None:
    """`settings` (e.g. nodes.a.hsm_module) are taken only from a config under the strict rule."""
    if not settings:
        return
    problem = trust_problem(path, strict=True)
    if problem:
        raise ConfigError(
            str(path),
            [f"[{', '.join(settings)}] taken only from a config {STRICT_RULE}, and {problem}"],
        )
