#!/usr/bin/env bash
# One setup for the README, the lab and CI: Debian packages when missing, then
# the package with its dev tools into ./.venv. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

packages=(opendnssec softhsm2 bind9 bind9-dnsutils ldnsutils sqlite3 libxml2-utils iproute2 util-linux
          openssl python3-venv swig unbound openssh-server openssh-client
          prometheus)  # prometheus: the server and promtool, for the metrics tests
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: need root to install Debian packages: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian packages start nothing here (no systemd), but be sure no packaged
# daemon holds the ports or /run/opendnssec that the lab uses.
mkdir -p /run/opendnssec

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e ".[dev]"
echo "setup: ready (.venv/bin/ods-duo)"
