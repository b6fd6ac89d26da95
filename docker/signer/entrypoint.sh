#!/bin/sh
# A signer container: the tested `ods-duo node init` steps (plan, then act; nothing to do on a
# restart), the daemons started by ods-duo (no systemd in a container) and stopped by pid on
# SIGTERM, and the watcher of the node's input directory in the foreground.
# NODE=backup instead initialises the backup store (its folder and token) and waits.
set -eu
: "${NODE:?set NODE to the node name in the duo config}"

if [ "$NODE" = backup ]; then
    ods-duo node op init --node backup </dev/null
    trap 'exit 0' TERM INT
    while :; do sleep 3600 & wait $!; done
fi

ods-duo node init "$NODE"
ods-duo node start "$NODE"
ods-duo node policy-import "$NODE"

stop() {
    [ -n "${watcher:-}" ] && kill -TERM "$watcher" 2>/dev/null && wait "$watcher" || true
    ods-duo node stop "$NODE"
    exit 0
}
trap stop TERM INT
ods-duo watch --node "$NODE" &
watcher=$!
wait "$watcher" || true
# The watcher ended on its own: stop the daemons so the container restarts cleanly.
ods-duo node stop "$NODE"
exit 1
