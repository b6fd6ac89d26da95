#!/bin/sh
# Wait for this secondary's zone statements (`ods-duo bind-config --secondary $SECONDARY --output
# /etc/bind/duo/$SECONDARY.conf`, written into the shared bind-config volume), check, run named.
set -eu
: "${SECONDARY:?set SECONDARY to the secondary name in the duo config}"
conf="/etc/bind/duo/$SECONDARY.conf"
key=/etc/ods-duo/secrets/duo-transfer.key
until [ -s "$conf" ] && [ -s "$key" ]; do
    echo "waiting for $conf and the transfer key" >&2
    sleep 5
done
# named reads its config as user bind: without CAP_DAC_READ_SEARCH (not in a container's default
# set) it cannot open the shared key (root 0600). A copy root:bind 0640, as the operator's guide
# puts it on a secondary; taken again at every start (the key may have been replaced).
install -m 0640 -o root -g bind "$key" /etc/bind/duo-transfer.key
# The link lives outside the read-only bind-config volume.
ln -sf "$conf" /etc/bind/zones.conf
named-checkconf /etc/bind/named.conf
exec named -g -u bind
