"""Algorithm 8 (RSASHA256) shares like 13; algorithm 15 (Ed25519) is refused up front where the HSM
cannot wrap it (SoftHSM 2.6.1), before any key exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import lab_processes, run_duo
from tests.support.dnssec import cross_validate, dnskey_rrset, verify_with_tools, write_zone

pytestmark = pytest.mark.integration


def test_algorithm_8_shared_and_cross_valid(make_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = make_lab("127.0.0.70", "--algorithm", "8")
    zones = {n: lab.signed(n, "example.test") for n in ("a", "b")}
    assert dnskey_rrset(zones["a"]) == dnskey_rrset(zones["b"])
    assert {k.algorithm for k in dnskey_rrset(zones["a"])} == {8}
    for signed, other in (("a", "b"), ("b", "a")):
        result = cross_validate(zones[signed], dnskey_rrset(zones[other]))
        assert result.failures == [] and result.validated > 10
        verify_with_tools(write_zone(zones[signed], tmp_path / signed), "example.test")


def test_algorithm_15_refused_up_front(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab15"
    try:
        args = ["lab", "up", "--dir", str(lab_dir), "--base-address", "127.0.0.75", "--algorithm", "15"]
        proc = run_duo(*args, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            "ods-duo: error: step preflight: the HSMs of a, b, backup cannot wrap algorithm 15 private keys, "
            "so such keys cannot be shared; choose another algorithm"
        )
        assert not list((lab_dir / "backup" / "bundles").glob("*.json"))
        listed = run_duo("--config", str(lab_dir / "duo.toml"), "--json", "key", "list")
        assert '"keys": []' in listed.stdout
    finally:
        run_duo("lab", "down", "--dir", str(lab_dir), check=False)
    assert lab_processes(lab_dir) == []
