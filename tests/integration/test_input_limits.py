"""Bad entries in the lab's watched input directory (issue 12, input limits): a $GENERATE bomb, a symbolic
link to a secret outside the folder, a FIFO, a folder and files that vanish as they are seen. Each gets
one line, nothing of the secret reaches logs, state or `zone list`, the watchers run on, a good zone
dropped afterwards is signed, and a signed zone whose file turns bad keeps being served."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Lab

pytestmark = pytest.mark.integration

MARKER = "ODS-DUO-SHADOW-MARKER-91b7e3"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def zone_text(zone: str, extra: str = "") -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 2026112900 3600 600 864000 300\n"
        f"@ IN NS ns1\nns1 IN A 192.0.2.53\n{extra}"
    )


def write_like_an_editor(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def link_like_an_editor(path: Path, target: Path) -> None:
    tmp = path.with_name(f".{path.name}.lnk.swp")
    tmp.symlink_to(target)
    os.replace(tmp, path)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def zone_rows(lab: Lab) -> dict[str, dict[str, Any]]:
    return {z["zone"]: z for z in json.loads(lab.duo("--json", "zone", "list").stdout)["zones"]}


def refused_everywhere(lab: Lab, zone: str) -> bool:
    return set(zone_rows(lab).get(zone, {}).get("refused", {})) == {"a", "b"}


def watcher_logs(lab: Lab) -> list[str]:
    return [Path(w["log"]).read_text() for w in lab.status["watchers"]]


def watchers_alive(lab: Lab) -> bool:
    for w in lab.status["watchers"]:
        try:
            cmdline = Path(f"/proc/{w['pid']}/cmdline").read_bytes()
        except OSError:
            return False
        if b"watch" not in cmdline:
            return False
    return True


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.0.200")


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file outside the input directory, like /etc/shadow, that also reads as a valid zone."""
    path = tmp_path_factory.mktemp("outside") / "shadow"
    path.write_text(zone_text("shadow.test", f'secret IN TXT "{MARKER}"\n') + f"; {MARKER}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def dropped(lab: Lab, secret: Path) -> dict[str, Path]:
    """The bad entries, then, once the watchers had them, a good zone."""
    inbox = Path(lab.status["input_dir"])
    bomb = inbox / "bomb.test"
    write_like_an_editor(bomb, zone_text("bomb.test", "$GENERATE 0-4294967295 h$ IN A 192.0.2.1\n"))
    assert bomb.stat().st_size <= 226
    link = inbox / "shadow.test"
    link.symlink_to(secret)
    fifo = inbox / "fifo.test"
    os.mkfifo(fifo)
    (inbox / "folder.test").mkdir()

    def churn() -> None:  # files that are gone again when the watchers look (listing or read)
        end = time.monotonic() + 3
        i = 0
        while time.monotonic() < end:
            path = inbox / f"vanish{i % 5}.test"
            path.write_text(zone_text(path.name))
            path.unlink()
            i += 1
            time.sleep(0.003)

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    wait_for("the bomb refused on both nodes", lambda: refused_everywhere(lab, "bomb.test"))
    wait_for("the link refused on both nodes", lambda: refused_everywhere(lab, "shadow.test"))
    good = inbox / "good.test"
    write_like_an_editor(good, zone_text("good.test", "www IN A 192.0.2.80\n"))
    return {"bomb": bomb, "link": link, "fifo": fifo, "good": good}


def test_each_bad_entry_is_one_line_and_the_watchers_run_on(lab: Lab, dropped: dict[str, Path]) -> None:
    rows = zone_rows(lab)
    bomb, link, fifo = dropped["bomb"], dropped["link"], dropped["fifo"]
    assert rows["bomb.test"]["refused"] == dict.fromkeys(("a", "b"), (
        f"{bomb}:6: $GENERATE 0-4294967295 makes 4294967296 records on top of the 3 before it, "
        "more than the limit of 1000000 (the [input] max_records limit)."
    ))  # fmt: skip
    link_message = f"{link}: symbolic link to a file outside the input directory; refused."
    assert rows["shadow.test"]["refused"] == {"a": link_message, "b": link_message}
    wait_for("the FIFO refused", lambda: refused_everywhere(lab, "fifo.test"))
    assert zone_rows(lab)["fifo.test"]["refused"]["a"] == f"{fifo}: not a regular file."
    assert "folder.test" not in rows and not any(z.startswith("vanish") for z in rows)
    for log in watcher_logs(lab):
        assert "Traceback" not in log
        assert all(LOG_LINE.match(line) for line in log.splitlines()), log
        assert f"ERROR duo_ods.watch.service: {link_message}" in log
        assert f"ERROR duo_ods.watch.service: {bomb}:6: $GENERATE 0-4294967295" in log
    assert watchers_alive(lab)


def test_a_good_zone_dropped_afterwards_is_signed_on_both_nodes(lab: Lab, dropped: dict[str, Path]) -> None:
    for node in ("a", "b"):
        signed = lab.signed(node, "good.test")
        assert signed.get_rdataset("www", "A") is not None
    assert watchers_alive(lab)


def test_the_secret_never_reaches_logs_state_or_zone_list(
    lab: Lab, dropped: dict[str, Path], secret: Path
) -> None:
    lab.signed("a", "good.test")  # the watchers have been through everything dropped
    assert MARKER not in lab.duo("--json", "zone", "list").stdout
    assert MARKER not in lab.duo("zone", "list").stdout
    marker = MARKER.encode()
    looked = 0
    for folder, _dirs, files in os.walk(lab.dir):  # every log, state file, signer input and output
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 * 1024 * 1024:
                continue
            assert marker not in path.read_bytes(), f"{path} holds the secret"
            looked += 1
    assert looked > 20


def test_a_signed_zone_whose_file_turns_into_a_bad_link_keeps_its_data(
    lab: Lab, dropped: dict[str, Path], secret: Path
) -> None:
    good = dropped["good"]
    before = {n: lab.signed(n, "good.test") for n in ("a", "b")}
    link_like_an_editor(good, secret)

    def reported() -> bool:
        row = zone_rows(lab)["good.test"]
        return all((v.get("input") or {}).get("status") == "error" for v in row["nodes"].values())

    wait_for("the bad link reported on both nodes", reported)
    row = zone_rows(lab)["good.test"]
    assert row["on_all_nodes"]
    assert row["nodes"]["a"]["input"]["message"] == (
        f"{good}: symbolic link to a file outside the input directory; refused."
    )
    for node in ("a", "b"):
        served = lab.signed(node, "good.test")
        assert served.get_rdataset("www", "A") == before[node].get_rdataset("www", "A")
        assert served.get_rdataset("secret", "TXT") is None
    write_like_an_editor(good, zone_text("good.test", "www IN A 192.0.2.81\n"))
    wait_for(
        "the fixed file taken",
        lambda: all(
            (v.get("input") or {}).get("status") == "ok"
            for v in zone_rows(lab)["good.test"]["nodes"].values()
        ),
    )
    assert watchers_alive(lab)
