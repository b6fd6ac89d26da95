"""What every command shares: the global options, the config, and output in text or JSON."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from duo_ods.cli.progress import NoProgress, ObservedTransport, Progress, shown, wanted
from duo_ods.config.load import load_config
from duo_ods.config.resolve import Duo
from duo_ods.config.trust import require_found_config_trusted
from duo_ods.errors import ConfigError
from duo_ods.protocol.client import NodeClient
from duo_ods.transport import Transport, transport_for

DEFAULT_LAB_DIR = Path("lab")
SYSTEM_CONFIG = Path("/etc/ods-duo/duo.toml")


@dataclass
class Ctx:
    config_path: Path | None
    json: bool
    verbose: bool
    _duo: Duo | None = field(default=None, repr=False)
    _transport: Transport | None = field(default=None, repr=False)
    _note: Callable[[str], None] | None = field(default=None, repr=False)

    def find_config(self) -> Path:
        """--config, then $ODS_DUO_CONFIG, then a lab in ./lab, then /etc/ods-duo/duo.toml.

        One found without being named (./lab or /etc) is used only if it and its folder are owned by
        root or the current user and writable by nobody else (duo_ods.config.trust); else one line.
        """
        if self.config_path is not None:
            return self.config_path
        if env := os.environ.get("ODS_DUO_CONFIG"):
            return Path(env)
        for candidate in (DEFAULT_LAB_DIR / "duo.toml", SYSTEM_CONFIG):
            if candidate.exists():
                require_found_config_trusted(candidate)
                return candidate
        raise ConfigError("no config", ["give --config FILE or set ODS_DUO_CONFIG (or run lab up)"])

    @property
    def duo(self) -> Duo:
        if self._duo is None:
            self._duo = load_config(self.find_config())
        return self._duo

    @property
    def transport(self) -> Transport:
        """One per command: its node agents live as long as the command."""
        if self._transport is None:
            self._transport = transport_for(self.duo, verbose=self.verbose)
        return self._transport

    def close(self) -> None:
        """Stop the node agents this command started."""
        if self._transport is not None:
            self._transport.close()

    @property
    def client(self) -> NodeClient:
        if self._note is not None:  # a progress display shows each node operation as it starts
            return NodeClient(ObservedTransport(self.transport, self._note))
        return NodeClient(self.transport)

    @contextmanager
    def progress(self, label: str, total: int | None = None) -> Iterator[Progress | NoProgress]:
        """A progress line on stderr while the block runs: on a terminal, never with --json or -v.
        Clients taken from this Ctx inside the block report their node operations to it."""
        enabled = wanted(sys.stderr, as_json=self.json, verbose=self.verbose)
        with shown(label, enabled=enabled, total=total) as display:
            self._note = display.note if isinstance(display, Progress) else None
            try:
                yield display
            finally:
                self._note = None

    def emit(self, data: Any, text: str) -> None:
        """One JSON document with --json, else the human text."""
        if self.json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
        elif text:  # nothing to say is no line, not an empty one
            click.echo(text)


pass_ctx = click.make_pass_decorator(Ctx)
