#!/bin/sh
# A signer container: the tested `ods-duo node init` steps (plan, then act; nothing to do on a
# restart), the daemons started by ods-duo (no systemd in a container) and stopped by pid on
# SIGTERM, and the watcher of the node's input directory in the foreground.
#   SSHD=yes            run sshd for the controller's ssh transport (host key and authorized_keys
#                       in /etc/ssh/duo, the node's own volume; the operator installs both ends)
#   WAIT_FOR=FILE       wait until FILE exists before node init (node b: the transfer TSIG key
#                       that node a's node init makes in the shared secrets volume)
#   AWAIT_RESTORE=yes   a wiped node (no enforcer database): run no node init, only sshd, and let
#                       the controller rebuild it with `ods-duo backup restore --node $NODE`
set -eu
: "${NODE:?set NODE to the node name in the duo config}"

if [ "${SSHD:-no}" = yes ]; then
    install -d -m 0700 /etc/ssh/duo /run/sshd
    if [ ! -s /etc/ssh/duo/ssh_host_ed25519_key ]; then
        ssh-keygen -q -t ed25519 -N "" -C "ods-duo node $NODE" -f /etc/ssh/duo/ssh_host_ed25519_key
    fi
    touch /etc/ssh/duo/authorized_keys
    chmod 0600 /etc/ssh/duo/authorized_keys
    /usr/sbin/sshd -E /var/log/sshd.log
fi

stop() {
    [ -n "${watcher:-}" ] && kill -TERM "$watcher" 2>/dev/null && wait "$watcher" || true
    ods-duo node stop "$NODE" || true
    exit 0
}
trap stop TERM INT

if [ "${AWAIT_RESTORE:-no}" = yes ] && [ ! -e /var/lib/opendnssec/kasp.db ]; then
    # `backup restore` refuses a node that has an enforcer database or runs its daemons: this one
    # waits for it (the daemons the restore starts are stopped by pid with the container).
    echo "node $NODE: wiped; waiting for \`ods-duo backup restore --node $NODE\` from the controller" >&2
    while :; do sleep 3600 & wait $! || true; done
fi

if [ -n "${WAIT_FOR:-}" ]; then
    until [ -s "$WAIT_FOR" ]; do
        echo "node $NODE: waiting for $WAIT_FOR" >&2
        sleep 2
    done
fi

ods-duo node init "$NODE"
ods-duo node start "$NODE"
ods-duo node policy-import "$NODE"

ods-duo watch --node "$NODE" &
watcher=$!
wait "$watcher" || true
# The watcher ended on its own: stop the daemons so the container restarts cleanly.
ods-duo node stop "$NODE"
exit 1
