"""The progress display: drawn on a terminal (a real pseudo-terminal here), nothing otherwise."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from duo_ods.cli.progress import CLEAR, COUNTERS, ObservedTransport, Progress, _LogWatcher, render, wanted
from duo_ods.protocol import ops as P
from tests.support.fake_nodes import FakeNodes

ROOT = Path(__file__).resolve().parents[3]

# A command's shape: work that logs finished items (as zone add and key create do) inside
# ctx.progress, then the command's own output on stdout.
CHILD = """
import logging, sys, time
from duo_ods.cli.context import Ctx
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
ctx = Ctx(config_path=None, json={as_json}, verbose=False)
log = logging.getLogger("duo_ods.zones.manage")
with ctx.progress("zone add", total=10) as shown:
    log.info("%d zones added on %s", 3, "a, b")
    time.sleep(0.6)
    log.info("%d zones added on %s", 7, "a, b")
    log.warning("a warning is still shown")
print("zone output")
"""


def _run_on_a_terminal(as_json: bool) -> tuple[str, str]:
    """(what reached the terminal on stderr, stdout) of CHILD with stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(as_json=as_json)],
        stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert proc.returncode == 0, seen
    return seen.decode(errors="replace"), out


def test_drawn_on_a_terminal_and_erased_before_the_output() -> None:
    terminal, out = _run_on_a_terminal(as_json=False)
    assert "zone add [" in terminal and "3/10" in terminal and "10/10" in terminal, terminal
    assert "zones added on a, b" in terminal  # what happened last is shown on the line
    assert terminal.count(CLEAR) >= 3 and terminal.endswith(CLEAR)  # erased at the end
    assert "LOG INFO" not in terminal  # INFO records feed the line, not the log on the terminal
    assert f"{CLEAR}LOG WARNING a warning is still shown" in terminal  # on an erased line
    assert out == "zone output\n"


def test_nothing_drawn_with_json_even_on_a_terminal() -> None:
    terminal, out = _run_on_a_terminal(as_json=True)
    assert "zone add" not in terminal and CLEAR not in terminal, terminal
    assert out == "zone output\n"


def test_wanted_only_on_a_terminal_without_json_or_verbose() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as tty:
            assert wanted(tty, as_json=False, verbose=False)
            assert not wanted(tty, as_json=True, verbose=False)
            assert not wanted(tty, as_json=False, verbose=True)
    finally:
        os.close(master)
        os.close(slave)
    assert not wanted(io.StringIO(), as_json=False, verbose=False)
    read, write = os.pipe()
    with os.fdopen(write, "w") as pipe:
        assert not wanted(pipe, as_json=False, verbose=False)
    os.close(read)


def test_render() -> None:
    assert render("check", 5, 10, 3.2, "node a: zone-list", 80, 0) == (
        "check [##########----------] 5/10  3s  node a: zone-list"
    )
    assert render("lab up", 0, None, 61.0, "", 80, 1) == "lab up /  61s"
    assert render("key create", 2, None, 1.0, "", 80, 0) == "key create | 2 done  1s"
    long = render("restore", 0, None, 0.0, "x" * 200, 40, 0)
    assert len(long) == 40 and long.endswith("…")


def test_the_observed_transport_names_each_operation() -> None:
    nodes = FakeNodes()
    nodes.on(P.ZONE_LIST, lambda node, _r: P.ZoneListReply(node=node, zones=[]))
    notes: list[str] = []
    observed = ObservedTransport(nodes, notes.append)
    observed.call("a", P.ZONE_LIST.name, {})
    assert notes == ["node a: zone-list"] and nodes.ops_called() == [P.ZONE_LIST]


def test_log_counts_only_with_a_total() -> None:
    """A finished-items record advances a display with a total (zone add), not lab up's spinner."""
    message = "keys made for %d zone(s) on %s: %s"
    record = logging.LogRecord(
        "duo_ods.keys.flow", logging.INFO, "f", 1, message, (2, "a, b", "x.test y.test"), None
    )
    for total, done in ((10, 2), (None, 0)):
        shown = Progress(io.StringIO(), "key create", total)
        _LogWatcher(shown, logging.WARNING).emit(record)
        assert shown.done == done and shown.note_text == "keys made for 2 zone(s) on a, b: x.test y.test"


def test_counted_messages_are_the_ones_the_library_logs() -> None:
    """A reworded log message would silently stop the count: each must be logged as written here."""
    sources = "".join(p.read_text() for p in (ROOT / "duo_ods").rglob("*.py") if "cli" not in p.parts)
    for message in COUNTERS:
        assert f'log.info("{message}"' in sources, message
