"""The one way ods-duo runs an external program.

Argument lists only (never a shell string); a failure raises CommandError with
the command, exit code, stdout and stderr. Secrets go in through `input` or a
file, never through argv.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence

from duo_ods.errors import CommandError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv to completion and return its result; raise CommandError when it fails."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    log.debug("run %s", argv)
    try:
        result = subprocess.run(
            list(argv),
            env=full_env,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, "", f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        err = exc.stderr if isinstance(exc.stderr, str) else ""
        raise CommandError(argv, -1, out, f"timed out after {timeout:.0f} s {err}") from exc
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stdout, result.stderr)
    return result
