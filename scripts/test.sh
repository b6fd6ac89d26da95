#!/usr/bin/env bash
# The test command of the README and CI: set up, then the static checks (mypy --strict, ruff),
# then the whole suite (unit tests without daemons first, then integration tests on real
# ODS/SoftHSM/BIND).
#
# The integration tests run as two streams at once. The rollover modules spend most of their
# minutes waiting for the enforcer's timers (keys move on policy delays, not on CPU), so they run
# beside the other modules instead of after them; every module brings up its own lab on its own
# addresses, and each stream has its own pytest temporary folder. Both streams must pass.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
.venv/bin/mypy duo_ods
.venv/bin/ruff check duo_ods tests bench
.venv/bin/pytest -q -p no:cacheprovider tests/unit "$@"

timers=(tests/integration/test_rollover.py tests/integration/test_autoroll.py)
base=$(mktemp -d /tmp/ods-duo-tests.XXXXXX)
pytest_args=(-q -p no:cacheprovider --durations=30)
.venv/bin/pytest "${pytest_args[@]}" --basetemp="$base/timers" "${timers[@]}" "$@" \
    >"$base/timers.log" 2>&1 &
timers_pid=$!
rest=0
.venv/bin/pytest "${pytest_args[@]}" --basetemp="$base/rest" tests/integration \
    "${timers[@]/#/--ignore=}" "$@" || rest=$?
timers_rc=0
wait "$timers_pid" || timers_rc=$?
echo "=== the rollover modules (run beside the others): ${timers[*]}"
cat "$base/timers.log"
echo "=== integration streams: others exit $rest, rollover modules exit $timers_rc"
[ "$rest" -eq 0 ] && [ "$timers_rc" -eq 0 ]
