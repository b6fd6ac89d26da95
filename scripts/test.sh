#!/usr/bin/env bash
# The test command of the README and CI: set up, then the whole suite
# (unit tests without daemons first, then integration tests on real ODS/SoftHSM).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
.venv/bin/pytest -q -p no:cacheprovider tests/unit "$@"
.venv/bin/pytest -q -p no:cacheprovider tests/integration "$@"
