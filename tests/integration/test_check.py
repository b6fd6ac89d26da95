"""`ods-duo check` on the live lab, and on tampered copies of its real AXFRs (issue 4)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Lab, without_supervisor
from tests.support.dnssec import wait_signed, write_zone

pytestmark = pytest.mark.integration

ZONE = "example.test"


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    # Its tests keep a daemon dead on purpose (killed, not `node stop`): no supervisor restarts it.
    return make_lab("127.0.0.80", edit=without_supervisor)


@pytest.fixture(scope="module")
def saved(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The real AXFRs of both signers, as zone file text."""
    folder = tmp_path_factory.mktemp("axfr")
    out = {}
    for node in ("a", "b"):
        z = lab.signed(node, ZONE)
        out[node] = write_zone(z, folder / node).read_text()
    return out


def run_check(lab: Lab, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = lab.duo("--json", "check", *args, check=False)
    return proc.returncode, json.loads(proc.stdout)


def nagios(lab: Lab, *args: str) -> tuple[int, str]:
    proc = lab.duo("check", "--nagios", *args, check=False)
    return proc.returncode, proc.stdout.strip()


def test_healthy_duo_is_ok(lab: Lab) -> None:
    code, report = run_check(lab)
    assert code == 0, report
    assert report["ok"] is True
    zone = report["zones"][ZONE]
    assert zone["ok"] is True and zone["problems"] == []
    assert set(zone["serials"]) == {"a", "b", "ns1"}  # the signers and the lab's secondary
    assert all(n > 10 for n in zone["signatures"].values())
    code, line = nagios(lab)
    assert (
        code == 0
        and line.startswith("DUO OK - ")
        and "| zones=1 critical=0 warning=0 min_expiry_days=" in line
    )


def test_saved_copies_are_ok(lab: Lab, saved: dict[str, str], tmp_path: Path) -> None:
    files = [tmp_path / "a", tmp_path / "b"]
    for f, node in zip(files, ("a", "b"), strict=True):
        f.write_text(saved[node])
    code, report = run_check(lab, ZONE, "--source", str(files[0]), "--source", str(files[1]))
    assert code == 0 and report["ok"] is True, report


def _edit_a(saved: dict[str, str], edit: Callable[[list[str]], list[str]], tmp_path: Path) -> list[str]:
    lines = saved["a"].splitlines()
    changed = edit(lines)
    assert changed != lines, "the tampering must change something"
    (tmp_path / "a").write_text("\n".join(changed) + "\n")
    (tmp_path / "b").write_text(saved["b"])
    return ["--source", str(tmp_path / "a"), "--source", str(tmp_path / "b")]


def _without(pattern: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [ln for ln in lines if not re.search(pattern, ln)]


def _replace(pattern: str, new: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [re.sub(pattern, new, ln) for ln in lines]


def _add(line: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [*lines, line]


def _first_nsec3_owner(text: str) -> str:
    return next(ln.split()[0] for ln in text.splitlines() if " NSEC3 1 " in ln)


SAME_SERIAL = r"\[duo\] zone data of a and b differ with the same serial: "
SIG_FAILS = r"\[a\] \d+ signatures do not validate: "
FOREIGN_ZSK = "lIjP1XnEVJ2B4Nw6iRmmwcGikSdRUe/7XbUpAv7z8pXdR0mp+wS5g5LTbFADc7aF2Mb3f7rCRdqz4zBtKDPyLQ=="

CASES = {
    "changed rdata": (_replace(r"^(www\.example\.test\. \d+ IN A) 192\.0\.2\.80$", r"\1 192.0.2.81"),
                      SIG_FAILS + r"www\.example\.test\. A"),
    "dropped rrsig": (_without(r"^www\.example\.test\. \d+ IN RRSIG A "),
                      r"\[a\] \d+ RRsets without a valid signature: www\.example\.test\. A"),
    "expired rrsig": (_replace(r"^(mail\.example\.test\. \d+ IN RRSIG A 13 3 \d+) \d{14}", r"\1 20200101000000"),  # noqa: E501
                      SIG_FAILS + r"mail\.example\.test\. A \(key tag \d+\): expired"),
    "dnskey on one side": (_add(f"example.test. 300 IN DNSKEY 256 3 13 {FOREIGN_ZSK}"),
                           r"\[duo\] the DNSKEY RRsets differ: a vs b"),
    "broken nsec3 chain": (None, r"\[a\] NSEC3 chain broken: "),
    "missing glue": (_without(r"^ns\.child\.example\.test\. \d+ IN A "),
                     SAME_SERIAL + r"only in b: ns\.child\.example\.test\. "),
    "extra record": (_add("extra.example.test. 300 IN A 192.0.2.200"),
                     SAME_SERIAL + r"only in a: extra\.example\.test\. "),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_copy_is_caught(lab: Lab, saved: dict[str, str], tmp_path: Path, case: str) -> None:
    edit, expected = CASES[case]
    if edit is None:  # drop one NSEC3 record (and its signature) from the chain
        owner = re.escape(_first_nsec3_owner(saved["a"]))
        edit = _without(rf"^{owner} \d+ IN (NSEC3|RRSIG NSEC3) ")
    args = _edit_a(saved, edit, tmp_path)
    code, report = run_check(lab, ZONE, *args)
    zone = report["zones"][ZONE]
    shown = [f"[{p['source']}] {p['message']}" for p in zone["problems"]]
    assert code == 1 and report["ok"] is False and zone["ok"] is False
    assert any(re.search(expected, s) for s in shown), shown
    assert all(p["severity"] in ("critical", "warning") for p in zone["problems"])
    status, line = nagios(lab, ZONE, *args)
    assert status == 2 and line.startswith("DUO CRITICAL - "), line


def test_a_node_down_is_a_problem_and_the_rest_still_runs(lab: Lab) -> None:
    lab.duo("node", "stop", "b")
    try:
        code, report = run_check(lab, ZONE)
    finally:
        lab.duo("node", "start", "b")
    zone = report["zones"][ZONE]
    assert code == 1 and zone["ok"] is False
    assert any(p["source"] == "b" and "no AXFR of example.test" in p["message"] for p in zone["problems"])
    assert zone["signatures"]["a"] > 10  # node a was still checked


# --- issue 13: a hung signer costs one timeout per run; --ds applies to every copy -----------

EXTRA_ZONES = [f"hung{i:02}.test" for i in range(1, 7)]  # each zone's shared keys take ~15 s to make
TIMEOUT = 3.0


@pytest.fixture(scope="module")
def many_zones(lab: Lab) -> list[str]:
    """Small zones dropped into the watched input folder (the key origin's watcher makes their
    keys), each signed on both nodes before the tests use them."""
    folder = Path(lab.status["input_dir"])
    example = (folder / ZONE).read_text()
    for zone in EXTRA_ZONES:
        temp = folder / f".{zone}.tmp"
        temp.write_text(example.replace(ZONE, zone))
        temp.rename(folder / zone)
    for zone in EXTRA_ZONES:
        for node in ("a", "b"):
            wait_signed_long(lab, node, zone)
    # The secondary learns each zone from its relay's catalog a moment after the signers serve
    # it; until then it answers NOTAUTH, which the tests below would count against it.
    deadline = time.monotonic() + 90
    while (code := run_check(lab, *EXTRA_ZONES)[0]) != 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert code == 0, run_check(lab, *EXTRA_ZONES)[1]
    return [ZONE, *EXTRA_ZONES]


def wait_signed_long(lab: Lab, node: str, zone: str) -> None:
    n = lab.node(node)
    wait_signed(n["address"], n["port"], zone, 2, lab.tsig, timeout=60 + 30 * len(EXTRA_ZONES))


def signerd_pid(lab: Lab, node: str) -> int:
    """The node's ods-signerd as the lab reports it now (a node stop/start gives a new pid)."""
    status = json.loads(lab.duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
    pid = int(next(n for n in status["nodes"] if n["name"] == node)["daemons"]["signerd"])
    assert "ods-signerd" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    return pid


def test_a_hung_signer_costs_one_timeout_not_one_per_zone(lab: Lab, many_zones: list[str]) -> None:
    pid = signerd_pid(lab, "b")
    os.kill(pid, signal.SIGSTOP)  # it keeps accepting TCP connections (the kernel does), never answers
    try:
        started = time.monotonic()
        code, report = run_check(lab, "--timeout", str(TIMEOUT))
        took = time.monotonic() - started
        status, line = nagios(lab, "--timeout", str(TIMEOUT))
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"check with b's signer stopped: {took:.1f} s for {len(many_zones)} zones (--timeout {TIMEOUT:g})")
    # One timeout for the whole run plus the checks themselves (not one timeout per zone: that
    # alone would be len(many_zones) x TIMEOUT).
    assert took < len(many_zones) * TIMEOUT, took
    assert took < 2 * TIMEOUT + 12, took
    assert code == 1 and report["ok"] is False
    assert set(many_zones) <= set(report["zones"])
    timed_out = 0
    for zone in many_zones:
        problems = report["zones"][zone]["problems"]
        from_b = [p for p in problems if p["source"] == "b"]
        assert len(from_b) == 1 and from_b[0]["severity"] == "critical", problems
        b = lab.node("b")
        assert from_b[0]["message"].startswith(f"no AXFR of {zone} from {b['address']} port {b['port']}: ")
        timed_out += from_b[0]["message"].endswith(f": no answer within {TIMEOUT:g} s")
        assert from_b[0]["message"].endswith(f"no answer within {TIMEOUT:g} s") or re.search(
            rf": not asked, it did not answer within {TIMEOUT:g} s for [a-z0-9.]+ earlier in this run$",
            from_b[0]["message"],
        ), from_b[0]["message"]
        # Everything else is still checked: a's copy and the secondary's.
        assert report["zones"][zone]["signatures"]["a"] > 10
        assert not [p for p in problems if p["severity"] == "critical" and p["source"] != "b"], problems
    assert 1 <= timed_out <= 2  # the others were not waited for
    assert status == 2 and line.startswith("DUO CRITICAL - b: no AXFR of "), line
    # b answers again once it runs on
    lab.signed("b", ZONE)


def test_a_wrong_ds_is_critical_on_every_copy(lab: Lab) -> None:
    good = lab.duo("--json", "key", "ds", ZONE)
    ds = json.loads(good.stdout)["ds"]
    code, report = run_check(lab, ZONE, *[a for d in ds for a in ("--ds", d)])
    assert code == 0 and report["ok"] is True, report
    tag, algorithm, digest_type, digest = ds[0].split(" IN DS ", 1)[1].split()
    wrong_digest = ("0" if digest[0] != "0" else "1") + digest[1:]
    for wrong in (f"{ZONE}. IN DS {tag} {algorithm} {digest_type} {wrong_digest}",
                  f"{ZONE}. IN DS {(int(tag) + 1) % 65536} {algorithm} {digest_type} {digest}"):  # fmt: skip
        code, report = run_check(lab, ZONE, "--ds", wrong)
        zone = report["zones"][ZONE]
        assert code == 1 and zone["ok"] is False
        wrong_ds = "not signed by a key that the DS given with --ds points to"
        flagged = {
            p["source"] for p in zone["problems"] if p["severity"] == "critical" and wrong_ds in p["message"]
        }  # fmt: skip
        assert flagged == {"a", "b", "ns1"}, zone["problems"]


@pytest.mark.parametrize(
    ("ds", "why"),
    [
        ("garbage", "not a DS record"),
        ("other.test. IN DS 1 13 2 " + "ab" * 32, "a DS for other.test, not for a zone being checked"),
        (f"{ZONE}. IN DS 1 13 9 abcd", "digest type 9 is not one of"),
    ],
)
def test_an_unparseable_ds_is_a_one_line_error(lab: Lab, ds: str, why: str) -> None:
    for zones in ([ZONE], []):
        proc = lab.duo("check", *zones, "--ds", ds, check=False)
        assert proc.returncode == 1 and proc.stdout == "", proc
        lines = proc.stderr.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith(f"ods-duo: error: --ds {ds!r}: ") and why in lines[0]
        ), lines


def test_a_node_whose_enforcer_is_down_is_marked_and_checked(lab: Lab) -> None:
    status = json.loads(lab.duo("--json", "lab", "status", "--dir", str(lab.dir)).stdout)
    pid = int(next(n for n in status["nodes"] if n["name"] == "b")["daemons"]["enforcerd"])
    assert "ods-enforcerd" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    os.kill(pid, signal.SIGTERM)  # the enforcer only: b's signer keeps signing and serving
    try:
        deadline = time.monotonic() + 30
        while _alive(pid):
            assert time.monotonic() < deadline, "b's enforcer did not stop"
            time.sleep(0.2)
        code, report = run_check(lab, ZONE)
    finally:
        lab.duo("node", "start", "b")  # starts what is not running: the enforcer
    zone = report["zones"][ZONE]
    assert code == 0 and zone["ok"] is True, zone
    marks = [p for p in zone["problems"] if p["source"] == "b"]
    assert len(marks) == 1 and marks[0]["severity"] == "warning", zone["problems"]
    assert "its enforcer does not answer" in marks[0]["message"]
    assert marks[0]["message"].endswith("key states read from its database")
    assert all(zone["signatures"][n] > 10 for n in ("a", "b", "ns1"))  # every copy still checked


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
