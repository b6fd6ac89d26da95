"""lab down leaves nothing behind: no process, no mount, no socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import lab_processes, run_duo

pytestmark = pytest.mark.integration


def test_lab_down_leaves_nothing(make_lab) -> None:  # type: ignore[no-untyped-def]
    lab = make_lab("127.0.0.50")
    pids = [pid for n in lab.status["nodes"] for pid in n["daemons"].values()]
    assert len(pids) == 4 and lab_processes(lab.dir)
    run_duo("lab", "down", "--dir", str(lab.dir))
    assert lab_processes(lab.dir) == []
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert str(lab.dir) not in Path("/proc/self/mountinfo").read_text()
    assert not list(lab.dir.glob("nodes/*/run/*.sock"))
    status = run_duo("--json", "lab", "status", "--dir", str(lab.dir))
    assert '"enforcerd": null' in status.stdout


def test_lab_down_works_when_the_config_no_longer_loads(make_lab) -> None:  # type: ignore[no-untyped-def]
    lab = make_lab("127.0.0.55")
    config = lab.dir / "duo.toml"
    config.write_text(config.read_text().replace('keys = "ksk-zsk"', 'keys = "csk"'))
    proc = run_duo("--json", "lab", "down", "--dir", str(lab.dir))
    assert "cannot work with OpenDNSSEC 2.1.12" in proc.stdout
    assert lab_processes(lab.dir) == []
