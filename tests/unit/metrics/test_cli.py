"""`ods-duo metrics` options."""

from __future__ import annotations

import click
import pytest

from duo_ods.cli.main import COMMANDS
from duo_ods.cli.metrics import parse_listen


def test_listen() -> None:
    assert parse_listen("127.0.0.1:9553") == ("127.0.0.1", 9553)
    assert parse_listen("[::1]:9553") == ("::1", 9553)
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", ":9553", "host:port"):
        with pytest.raises(click.BadParameter):
            parse_listen(bad)


def test_registered() -> None:
    assert COMMANDS["metrics"] == "duo_ods.cli.metrics:metrics"
