"""Key creation benchmark (issue 14): `ods-duo key create ZONE` on the lab duo, one zone at a time,
through the local transport and through the ssh transport in the same run.

Run from the repository folder, as root:
    .venv/bin/python bench/key_bench.py [--zones 6] [--base-address 127.0.5.20]
             [--transports local,ssh] [--out bench/results/keys.md] [--label NAME]
It freezes the ods-duo code (bench/harness.py), brings up a lab (nodes on BASE+1 and BASE+2) and,
for ssh, an OpenSSH server of each node's own on the node's address, port 2211, whose key runs only
the node's forced command (`ods-duo node serve-ssh`, the same setup as tests/integration/test_ssh.py,
from tests/support/sshd.py). Then per zone, for each transport in turn (interleaved, so both meet
the same machine load): `zone add` (not timed) and `ods-duo key create` timed as a wall clock of
the whole command, as an operator sees it: every node operation, the copies to the peer and the
backup, both enforcers' imports, the snapshot after. The local median is the figure of the
target (<= 1.5 s); ssh over local is the other (<= 1.5x). Always `lab down` and every sshd
stopped by pid. Each run adds a section at the top of --out; --label names it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: bench.harness and tests.support from this checkout
    sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    Frozen,
    LoadMeter,
    freeze,
    machine_info,
    machine_line,
    other_work,
    prepend_section,
    require_root,
    setup_logging,
    small_zone,
    source_text,
    today_serial,
)
from tests.support.sshd import SSH_PORT, Sshd, keygen, ssh_config_text, start_sshd  # noqa: E402

HEADER = """# `key create` time (bench/key_bench.py)

Newest run first. Each run times `ods-duo key create` for one zone at a time on the lab duo; with
both transports the zones alternate between them, so their ratio is from one run and one load.
"""
TRANSPORTS = ("local", "ssh")


@contextmanager
def ssh_nodes(frozen: Frozen, lab_dir: Path, nodes: dict[str, str]) -> Iterator[Path]:
    """An sshd per node in front of the lab, running the frozen ods-duo; yields the ssh config."""
    base = lab_dir / "ssh"
    base.mkdir(exist_ok=True)
    client_pub = keygen(base / "client_key")
    ods_duo = str(frozen.wrapper())
    config = lab_dir / "duo.toml"
    servers: dict[str, Sshd] = {}
    try:
        for node, address in nodes.items():
            forced = f"{ods_duo} --config {config} node serve-ssh --node {node}"
            authorized = [f'command="{forced}",restrict {client_pub}']
            servers[node] = start_sshd(node, address, base / f"sshd-{node}", authorized)
        known_hosts = base / "known_hosts"
        known_hosts.write_text(
            "".join(f"[{s.address}]:{SSH_PORT} {s.host_key_line}\n" for s in servers.values())
        )
        settings = {
            node: {
                "port": SSH_PORT,
                "identity_file": str(base / "client_key"),
                "known_hosts_file": str(known_hosts),
                "remote_command": ods_duo,
                "remote_config": str(config),
                "connect_timeout": 5,
                "op_timeout": 120,
            }
            for node in nodes
        }
        ssh_config = lab_dir / "duo-ssh.toml"  # next to the lab's: relative paths resolve alike
        ssh_config.write_text(ssh_config_text(config.read_text(), settings))
        yield ssh_config
    finally:
        for server in servers.values():
            server.stop()


def measure(
    frozen: Frozen, lab_config: Path, configs: dict[str, Path], zones: int, work: Path
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {t: [] for t in configs}
    serial = today_serial()
    for i in range(zones):
        for transport, config in configs.items():
            zone = f"kb{i}-{transport}.test"
            (work / zone).write_text(small_zone(zone, serial))
            frozen.cli("--config", str(lab_config), "zone", "add", zone, "--file", str(work / zone))
            t0 = time.monotonic()
            frozen.cli("--config", str(config), "key", "create", zone)
            times[transport].append(time.monotonic() - t0)
            print(f"{zone}: {times[transport][-1]:.2f} s", flush=True)
    return times


def section(label: str, info: dict[str, object], times: dict[str, list[float]], *, load: dict[str, float],
            others: dict[str, int], source: dict[str, object]) -> str:  # fmt: skip
    medians = {t: statistics.median(v) for t, v in times.items()}
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} {label}".rstrip(),
        "",
        f"`key create` on the lab duo (2 nodes + backup), {len(next(iter(times.values())))} zones per "
        "transport, one after another, the transports alternating. "
        f"{machine_line(info)}; during the run {load['busy_cores']} cores busy on average (of "
        f"{info.get('nproc')}), load average {load['loadavg_end']} at the end; other work at the start: "
        + (", ".join(f"{n} x {k}" for k, n in sorted(others.items())) or "none")
        + f". {source_text(source)}.",
        "",
        "| transport | median s | min s | max s | each |",
        "|---|---|---|---|---|",
    ]
    for transport, values in times.items():
        lines.append(
            f"| {transport} | **{medians[transport]:.2f}** | {min(values):.2f} | {max(values):.2f} "
            f"| {', '.join(f'{v:.2f}' for v in values)} |"
        )
    lines.append("")
    if "local" in medians:
        verdict = "met" if medians["local"] <= 1.5 else f"missed by {medians['local'] - 1.5:.2f} s"
        lines.append(f"Target one zone, local: median <= 1.5 s: {verdict}.")
    if "local" in medians and "ssh" in medians:
        ratio = medians["ssh"] / medians["local"]
        verdict = "met" if ratio <= 1.5 else "missed"
        lines.append(f"Target ssh within 1.5x of local: ssh / local = **{ratio:.2f}x**, {verdict}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--zones", type=int, default=6, help="zones per transport")
    parser.add_argument("--base-address", default="127.0.5.20", help="nodes on +1 and +2")
    parser.add_argument("--transports", default="local,ssh", help="local, ssh or both (comma-separated)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "keys.md")
    parser.add_argument("--label", default="")
    parser.add_argument("--source", default="worktree", help="worktree or a git revision to measure")
    parser.add_argument("--workdir", type=Path, help="default: a new folder under /tmp")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if not set(transports) <= set(TRANSPORTS) or not transports:
        parser.error(f"--transports: choose from {', '.join(TRANSPORTS)}")
    require_root(parser)
    setup_logging(args.verbose)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="key-bench-"))).resolve()
    frozen = freeze(work, args.source)
    info, others = machine_info(), other_work([str(work)])
    lab = work / "lab"
    configs = {"local": lab / "duo.toml"} if "local" in transports else {}
    meter = LoadMeter()
    try:
        frozen.cli("lab", "up", "--dir", str(lab), "--base-address", args.base_address)
        status = json.loads(frozen.cli("--json", "lab", "status", "--dir", str(lab)).stdout)
        nodes = {n["name"]: n["address"] for n in status["nodes"]}
        if "ssh" in transports:
            with ssh_nodes(frozen, lab, nodes) as ssh_config:
                configs["ssh"] = ssh_config
                times = measure(frozen, lab / "duo.toml", configs, args.zones, work)
        else:
            times = measure(frozen, lab / "duo.toml", configs, args.zones, work)
    finally:
        frozen.cli("lab", "down", "--dir", str(lab), check=False)
    text = section(args.label, info, times, load=meter.result(), others=others, source=frozen.info)
    prepend_section(args.out, HEADER, text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
