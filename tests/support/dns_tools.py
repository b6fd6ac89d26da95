"""Real validators for tests: delv through a server with a trust anchor, in one shot or in a loop."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dns.rdtypes.ANY.DNSKEY import DNSKEY


def write_trust_anchor(path: Path, zone: str, ksk: DNSKEY) -> Path:
    """A delv/BIND trust-anchors file for the zone's KSK."""
    key = ksk.to_text().split(" ", 3)
    path.write_text(
        f'trust-anchors {{ {zone}. static-key {key[0]} {key[1]} {key[2]} "{key[3].replace(" ", "")}"; }};\n'
    )
    return path


def delv(server: str, anchor: Path, zone: str, name: str, rdtype: str) -> tuple[bool, str]:
    """Ask through `server` and validate from the zone's trust anchor: (fully validated?, output)."""
    proc = subprocess.run(
        ["delv", f"@{server}", "-a", str(anchor), f"+root={zone}", name, rdtype],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    return "fully validated" in out, out


@dataclass
class DelvLoop:
    """Keeps asking (positive, NXDOMAIN, NODATA) in a thread; collects every answer that did not validate."""

    server: str
    anchor: Path
    zone: str
    queries: list[tuple[str, str]]
    asked: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> DelvLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            name, rdtype = self.queries[self.asked % len(self.queries)]
            ok, out = delv(self.server, self.anchor, self.zone, name, rdtype)
            self.asked += 1
            if not ok:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {name} {rdtype}: {out.strip()[:300]}")
            self._stop.wait(0.3)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)


def ksk_of(dnskeys: object) -> DNSKEY:
    (ksk,) = [k for k in dnskeys if isinstance(k, DNSKEY) and k.flags == 257]  # type: ignore[attr-defined]
    return ksk
