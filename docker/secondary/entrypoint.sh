#!/bin/sh
# Wait for this secondary's zone statements (`ods-duo bind-config --secondary $SECONDARY --output
# /etc/bind/duo/$SECONDARY.conf`, written into the shared bind-config volume), check, run named.
set -eu
: "${SECONDARY:?set SECONDARY to the secondary name in the duo config}"
conf="/etc/bind/duo/$SECONDARY.conf"
until [ -s "$conf" ] && [ -s /etc/ods-duo/secrets/duo-transfer.key ]; do
    echo "waiting for $conf and the transfer key" >&2
    sleep 5
done
ln -sf "$conf" /etc/bind/duo/zones.conf
named-checkconf /etc/bind/named.conf
exec named -g -u bind
