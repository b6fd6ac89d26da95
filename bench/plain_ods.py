"""One plain OpenDNSSEC instance next to the lab, for comparisons: its own SoftHSM token, the
project's conf.xml template minus <ManualKeyGeneration/> (ODS makes its own keys), the duo's
kasp.xml, started the way the lab starts nodes (`unshare -m` + `duo_ods.node.nsexec`).

Used by sign_bench.py (imported: it runs on the frozen source already) and by watch_bench.py
(as a script, with the frozen source on PYTHONPATH):
    python bench/plain_ods.py bulk --base DIR --address ADDR --duo-config LAB/duo.toml --zones 1000
adds that many small zones with one `ods-enforcer zonelist import` and prints, as JSON, the time
until the instance serves every one signed (SOA answered), or what it reached by --cap seconds.
The daemons are stopped by pid at the end, also when it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # bench.harness; duo_ods comes first from PYTHONPATH (the frozen copy)

from bench.harness import LoadMeter, small_zone, soa_serial, today_serial  # noqa: E402
from duo_ods.config.load import load_config  # noqa: E402
from duo_ods.config.model import NodeConfig, PolicyConfig  # noqa: E402
from duo_ods.config.resolve import Node, NodePaths  # noqa: E402
from duo_ods.node import daemons  # noqa: E402
from duo_ods.node.secrets import ensure_secret  # noqa: E402
from duo_ods.node.setup import init_enforcer_db, make_directories  # noqa: E402
from duo_ods.node.token import init_token, write_softhsm_conf  # noqa: E402
from duo_ods.ods.client import Enforcer  # noqa: E402
from duo_ods.render.engine import render, write_atomic  # noqa: E402
from duo_ods.render.validate import check_ods_xml  # noqa: E402
from duo_ods.render.views import conf_view, kasp_view, zonelist_view  # noqa: E402

log = logging.getLogger("plain_ods")

# The single instance's DNS output adapter: plain ODS, AXFR to this host, no TSIG, no NOTIFY.
PLAIN_ADDNS = """<?xml version="1.0" encoding="UTF-8"?>
<Adapter>
\t<DNS>
\t\t<Outbound>
\t\t\t<ProvideTransfer><Peer><Prefix>127.0.0.0/8</Prefix></Peer></ProvideTransfer>
\t\t</Outbound>
\t</DNS>
</Adapter>
"""


def wait_gone(pids: list[int], timeout: float = 20.0) -> None:
    """Wait until the processes are gone from /proc, zombies included.

    `node stop` counts a zombie as stopped, but ods-enforcerd sometimes segfaults on SIGTERM
    and leaves its pid file; while the zombie exists, a new enforcer sees that pid "running"
    (kill(pid, 0) succeeds) and refuses to start ("Pidfile exists and process with PID is running").
    """
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        for pid in pids:  # the single instance's daemons are our own children: reap them
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)


def rendered_threads(conf_xml: Path) -> tuple[int, int]:
    """(WorkerThreads, SignerThreads) of <Signer> in a rendered conf.xml."""
    root = ElementTree.parse(conf_xml).getroot()  # noqa: S314 (our own rendered file)
    signer = root.find("Signer")
    assert signer is not None
    return int(signer.findtext("WorkerThreads", "0")), int(signer.findtext("SignerThreads", "0"))


class PlainOds:
    """One plain OpenDNSSEC: own token, ODS makes its own keys, started the way the lab starts nodes."""

    def __init__(self, base: Path, address: str, port: int, duo_config: Path) -> None:
        self.base = base
        self.address = address
        self.port = port
        self.duo_config = duo_config  # the single instance signs under the duo's policy
        self.node = self._node(2, 2)

    @property
    def policy(self) -> PolicyConfig:
        return load_config(self.duo_config).config.policy

    def _node(self, worker: int, signer: int) -> Node:
        config = NodeConfig(
            address=self.address,
            port=self.port,
            base_dir=str(self.base),
            token_label="BENCH-SINGLE",  # noqa: S106 (a label, no secret)
            worker_threads=worker,
            signer_threads=signer,
        )
        return Node(
            name="single",
            config=config,
            paths=NodePaths(self.base),
            input_dir=self.base / "input",
            pin_file=self.base / "secrets" / "pin",
        )

    def configure(self, worker: int, signer: int) -> None:
        """(Re)write conf.xml etc. for these threads; the project's templates, minus ManualKeyGeneration."""
        self.node = node = self._node(worker, signer)
        p = node.paths
        make_directories(node)
        pin = ensure_secret(node.pin_file)
        so_pin = ensure_secret(p.secrets / "so-pin")
        write_softhsm_conf(p.softhsm_conf, p.tokens, "single")
        init_token(p.softhsm_conf, node.config.token_label, pin, so_pin, "single")
        init_enforcer_db(node)
        conf = render("conf.xml.j2", conf_view(node, pin))
        # Plain ODS: the enforcer makes its own keys.
        conf = re.sub(r"[ \t]*<!--[^>]*makes every key[^>]*-->\n", "", conf)
        conf = conf.replace("<ManualKeyGeneration/>", "")
        files = [
            (p.conf_xml, conf, "conf", 0o600),
            (p.kasp_xml, render("kasp.xml.j2", kasp_view(self.policy)), "kasp", 0o644),
            (
                p.zonelist_xml,
                render("zonelist.xml.j2", zonelist_view(node, self.policy.name, [])),
                "zonelist",
                0o644,
            ),
            (p.addns_xml, PLAIN_ADDNS, "addns", 0o600),
        ]
        for path, text, schema, mode in files:
            check_ods_xml(text, schema, str(path))
            write_atomic(path, text, mode)
        if rendered_threads(p.conf_xml) != (worker, signer):
            raise RuntimeError("single: conf.xml threads not as asked")

    def restart(self, worker: int, signer: int) -> None:
        pids = [r.pid for d in daemons.DAEMONS if (r := daemons.running(self.node, d)) is not None]
        daemons.stop(self.node)
        wait_gone(pids)
        self.configure(worker, signer)
        daemons.start(self.node)
        Enforcer(self.node.paths.enforcer_sock)("policy", "import")
        log.info("single: running with worker_threads=%d signer_threads=%d", worker, signer)

    def stop(self) -> dict[str, str]:
        if not self.node.paths.state.exists():
            return {}
        stopped = daemons.stop(self.node)
        log.info("single: stop %s", stopped)
        return stopped

    def zonelist_import(self, zones: list[str], folder: Path) -> float:
        """Small zones (files in `folder`) into the enforcer with one `zonelist import`; its seconds."""
        p = self.node.paths
        folder.mkdir(parents=True, exist_ok=True)
        serial = today_serial()
        for zone in zones:
            (folder / zone).write_text(small_zone(zone, serial))
        entries = "".join(
            f'\t<Zone name="{zone}">\n\t\t<Policy>{self.policy.name}</Policy>\n'
            f"\t\t<SignerConfiguration>{p.signconf(zone)}</SignerConfiguration>\n"
            f"\t\t<Adapters>\n\t\t\t<Input><File>{folder / zone}</File></Input>\n"
            f'\t\t\t<Output><Adapter type="DNS">{p.addns_xml}</Adapter></Output>\n'
            "\t\t</Adapters>\n\t</Zone>\n"
            for zone in zones
        )
        xml = folder / "zonelist.xml"
        xml.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<ZoneList>\n{entries}</ZoneList>\n')
        started = time.monotonic()
        Enforcer(p.enforcer_sock)("zonelist", "import", "--file", str(xml))
        return time.monotonic() - started


def bulk(args: argparse.Namespace) -> dict[str, Any]:
    """Plain ODS onboarding `zones` new zones: zonelist import, then until all are served signed."""
    plain = PlainOds(args.base, args.address, args.port, args.duo_config)
    zones = [f"y{i:05d}.bench" for i in range(args.zones)]
    result: dict[str, Any] = {"zones": args.zones, "address": args.address, "cap_s": args.cap}
    meter = LoadMeter()
    try:
        started = time.monotonic()
        plain.restart(2, 2)
        result["start_s"] = round(time.monotonic() - started, 1)
        t0 = time.monotonic()
        result["import_s"] = round(plain.zonelist_import(zones, args.base / "zones"), 1)
        pending = set(zones)
        progress = []
        with ThreadPoolExecutor(16) as pool:
            while pending and time.monotonic() - t0 < args.cap:
                answers = pool.map(
                    lambda z: (z, soa_serial(args.address, args.port, z, None, 0.5)), sorted(pending)
                )
                pending -= {z for z, serial in answers if serial is not None}
                progress.append(
                    {"at_s": round(time.monotonic() - t0, 1), "served": args.zones - len(pending)}
                )
                log.info(
                    "plain: %d of %d served at %.0f s",
                    args.zones - len(pending),
                    args.zones,
                    time.monotonic() - t0,
                )
                if pending:
                    time.sleep(5)
        result["served"] = args.zones - len(pending)
        result["progress"] = progress
        if not pending:
            result["all_served_s"] = progress[-1]["at_s"]
        keys = Enforcer(plain.node.paths.enforcer_sock)("key", "list")
        result["keys_listed"] = sum(1 for line in keys.splitlines() if line.startswith("y"))
    finally:
        result["stopped"] = plain.stop()
        result["load"] = meter.result()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bulk", help="time plain ODS onboarding many small zones with its own keys")
    b.add_argument("--base", type=Path, required=True, help="its folder (made)")
    b.add_argument("--address", required=True)
    b.add_argument("--port", type=int, default=53)
    b.add_argument("--duo-config", type=Path, required=True, help="the lab's duo.toml: its policy")
    b.add_argument("--zones", type=int, default=1000)
    b.add_argument("--cap", type=float, default=600.0, help="stop waiting after (s)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    print(json.dumps(bulk(args), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
