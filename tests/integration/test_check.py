"""`ods-duo check` on the live lab, and on tampered copies of its real AXFRs (issue 4)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Lab
from tests.support.dnssec import write_zone

pytestmark = pytest.mark.integration

ZONE = "example.test"


@pytest.fixture(scope="module")
def lab(make_lab) -> Lab:  # type: ignore[no-untyped-def]
    return make_lab("127.0.0.80")


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
