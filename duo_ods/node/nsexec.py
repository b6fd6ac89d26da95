"""Exec a daemon with the node's run directory mounted over /run/opendnssec.

Run as `unshare -m --propagation private -- python -P -m duo_ods.node.nsexec RUN_DIR -- CMD...`.
Why: ods-signerd's pid file and socket are fixed at /run/opendnssec (conf.rng
has no place for them) and the enforcer calls `ods-signer update` on that
default socket, so two nodes on one host each need a private view of
/run/opendnssec. The exec keeps the pid, so the caller stops the daemon by the
pid it started. Remove this when ODS lets the signer's socket be configured.
"""

from __future__ import annotations

import os
import subprocess
import sys

ODS_RUN = "/run/opendnssec"


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: nsexec RUN_DIR -- COMMAND [ARGS...]")
    run_dir, command = argv[0], argv[2:]
    os.makedirs(ODS_RUN, exist_ok=True)
    subprocess.run(["mount", "--bind", run_dir, ODS_RUN], check=True)
    os.execvp(command[0], command)  # noqa: S606 (an argument list, no shell)


if __name__ == "__main__":
    main(sys.argv[1:])
