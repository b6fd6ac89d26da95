#!/bin/sh
# A signer container: the tested `ods-duo node init` steps (plan, then act; nothing to do on a
# restart), the daemons started by ods-duo (no systemd in a container), the watcher of the node's
# input directory, and the node's transfer relay (named with the named.conf node init wrote; the
# watcher keeps its zone list and catalog). The daemons, the watcher and the relay are stopped by
# pid on SIGTERM; if the watcher or the relay ends on its own, everything is stopped (exit 1).
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

relay_dir="/var/lib/ods-duo/$NODE/relay"   # the node's base_dir in the duo config, then relay/

# The watcher first (it writes to the relay), then the daemons; the relay last: it serves what it has.
stop_all() {
    [ -n "${watcher:-}" ] && kill -TERM "$watcher" 2>/dev/null && wait "$watcher" || true
    ods-duo node stop "$NODE" || true
    [ -n "${relay:-}" ] && kill -TERM "$relay" 2>/dev/null && wait "$relay" || true
}
stop() {
    stop_all
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

# The relay's named.conf includes its zone list, which the watcher's first relay sync writes (and
# checks with named-checkconf): start named once it is there. named drops to user bind: the relay
# reads its own copy of the transfer key (relay/transfer.key, root:bind 0640, written by node init and
# kept by relay sync); the duo's own key file stays root's alone.
until [ -s "$relay_dir/zones.conf" ]; do
    kill -0 "$watcher" 2>/dev/null || { echo "node $NODE: the watcher ended before the relay's zone list" >&2; stop_all; exit 1; }
    sleep 1 & wait $! || true
done
named -f -u bind -c "$relay_dir/named.conf" &
relay=$!
echo "node $NODE: relay named (pid $relay) on its node's relay address, log $relay_dir/named.log" >&2

# In the foreground until the watcher or the relay ends (sh has no `wait -n`: a short poll, in a
# background sleep so that SIGTERM is handled at once).
while kill -0 "$watcher" 2>/dev/null && kill -0 "$relay" 2>/dev/null; do
    sleep 2 & wait $! || true
done
echo "node $NODE: the watcher or the relay ended on its own; stopping the node" >&2
stop_all
exit 1
