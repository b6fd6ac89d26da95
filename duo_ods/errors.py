"""One root exception for everything ods-duo reports to a user.

The CLI prints a DuoError as one line and exits non-zero; anything else is a bug
and gets a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class DuoError(Exception):
    """Root of every error meant for the operator."""


class ConfigError(DuoError):
    """The config file is wrong; carries every problem found, each with its place."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class RenderError(DuoError):
    """A generated file failed its owner's checker (xmllint, named-checkconf)."""


class CommandError(DuoError):
    """An external command failed. Keeps what is needed to understand why."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr.strip() or stdout.strip()).splitlines()
        last = detail[-1] if detail else "no output"
        super().__init__(f"{' '.join(self.argv[:3])} exited {returncode}: {last}")


class ZoneFileError(DuoError):
    """An input zone file was refused; the message starts with file:line."""


class NodeError(DuoError):
    """A signer node is not in the state an operation needs (down, not initialised, busy)."""


class TransportError(DuoError):
    """A node could not be reached, or answered something that is not a valid reply."""


class HsmError(DuoError):
    """A PKCS#11 operation failed."""


class LabError(DuoError):
    """The embedded lab cannot be built or torn down as asked."""
