#!/usr/bin/env bash
# The test command of the README and CI: set up, then the static checks (mypy --strict, ruff),
# then the whole suite (unit tests without daemons first, then integration tests on real
# ODS/SoftHSM/BIND).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
.venv/bin/mypy duo_ods
.venv/bin/ruff check duo_ods tests bench
.venv/bin/pytest -q -p no:cacheprovider tests/unit "$@"
.venv/bin/pytest -q -p no:cacheprovider --durations=30 tests/integration "$@"
