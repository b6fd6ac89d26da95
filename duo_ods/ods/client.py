"""The ods-enforcer and ods-signer command line clients, on a node's own sockets."""

from __future__ import annotations

from pathlib import Path

from duo_ods.errors import CommandError
from duo_ods.process import run


def _strip_banner(text: str) -> str:
    """Drop the 'sock set to ...' line the clients print first when given -s."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("sock set to "))


class OdsClient:
    """One ODS command line client bound to one daemon socket."""

    program = ""

    def __init__(self, socket: Path, timeout: float = 120.0) -> None:
        self.socket = socket
        self.timeout = timeout

    def __call__(self, *args: str) -> str:
        """Run a command; return its output without the banner; raise CommandError on failure.

        The clients exit non-zero on most errors, but some failures only show as
        text, so known error words in the output count as failure too.
        """
        argv = [self.program, "-s", str(self.socket), *args]
        result = run(argv, timeout=self.timeout, check=False)
        out = _strip_banner(result.stdout)
        if result.returncode != 0 or _looks_failed(out):
            raise CommandError(argv, result.returncode or 1, out, result.stderr)
        return out


def _looks_failed(out: str) -> bool:
    lowered = out.lower()
    return any(
        marker in lowered
        for marker in ("unable to connect to engine", "error:", "unknown command", "failed to")
    )


class Enforcer(OdsClient):
    program = "ods-enforcer"


class Signer(OdsClient):
    program = "ods-signer"
