#!/bin/sh
# Wait for this secondary's statements and options fragment (`ods-duo bind-config --secondary
# $SECONDARY --output /etc/bind/duo/$SECONDARY.conf` writes both, FILE and FILE.options, into the
# shared bind-config volume), check, run named. The zones come from the duo's catalog: named.conf is
# not rendered again when zones come and go.
set -eu
: "${SECONDARY:?set SECONDARY to the secondary name in the duo config}"
conf="/etc/bind/duo/$SECONDARY.conf"
key=/etc/ods-duo/secrets/duo-transfer.key
until [ -s "$conf" ] && [ -s "$conf.options" ] && [ -s "$key" ]; do
    echo "waiting for $conf, $conf.options and the transfer key" >&2
    sleep 5
done
# named reads its config as user bind: without CAP_DAC_READ_SEARCH (not in a container's default
# set) it cannot open the shared key (root 0600). A copy root:bind 0640, as the operator's guide
# puts it on a secondary; taken again at every start (the key may have been replaced).
install -m 0640 -o root -g bind "$key" /etc/bind/duo-transfer.key
# The links live outside the read-only bind-config volume.
ln -sf "$conf" /etc/bind/zones.conf
ln -sf "$conf.options" /etc/bind/duo-options.conf
named-checkconf /etc/bind/named.conf
exec named -g -u bind
