#!/usr/bin/env bash
# The docker/ smoke test: build both images, bring the compose duo up (each signer with its relay),
# render the secondaries' config once (the catalog), sign a zone on both signers, serve it from both
# secondaries (learnt from the catalog, pulled from the relays with TSIG), prove it with `ods-duo
# check`, then wipe signer b and rebuild it with `ods-duo backup restore` inside the compose setup:
# same DNSKEY set. Everything this script
# creates (containers, volumes, network of its compose project) is removed when it ends, passed or
# not; the images it built stay.
#
#   bash docker/smoke.sh                    # podman (installs docker/smoke-packages.txt if missing)
#   ENGINE=docker bash docker/smoke.sh      # Docker with the compose plugin
#
# Its last result goes to docker/smoke-result.txt. Run it as root (podman here runs rootful).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

ENGINE=${ENGINE:-podman}
PROJECT=${PROJECT:-ods-duo-smoke}
ZONE=example.test
WAIT=${WAIT:-600}                      # seconds any one wait below may take
RESULT="$here/smoke-result.txt"
BASE_IMAGE=debian:bookworm-slim        # the name both Dockerfiles start FROM
A=172.30.53.11 B=172.30.53.12 NS1=172.30.53.21 NS2=172.30.53.22
started=$(date +%s)
step_log=()
outcome=FAIL
failed_step=""
current=""

say() { printf '%s smoke: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
step() {
    local now
    now=$(date +%s)
    [[ -n "$current" ]] && step_log+=("$current: $((now - step_started)) s")
    current=$1
    step_started=$now
    say "== $1"
}

# --- the container engine -------------------------------------------------------------------------
label="com.docker.compose.project=$PROJECT"
engine_version="" base_source="not needed" images_version=""
workdir=$(mktemp -d /tmp/ods-duo-smoke.XXXXXX)

# The project's resources by name and label (podman-compose and Docker both set this label).
teardown() {
    local rc=$? ids
    trap - EXIT INT TERM
    [[ -n "$current" ]] && step_log+=("$current: $(($(date +%s) - step_started)) s")
    if [[ $rc -ne 0 && $outcome != PASS ]]; then
        failed_step=$current
        say "FAILED in step: $current"
        for c in a b ns1 ns2; do
            ids=$(cid "$c" 2>/dev/null || true)
            [[ -n "$ids" ]] || continue
            say "--- last log lines of $c"
            eng logs --tail 30 "$ids" 2>&1 | tail -30 >&2 || true
        done
    fi
    say "tearing down project $PROJECT"
    local down_started
    down_started=$(date +%s)
    compose down -v >/dev/null 2>&1 || true
    ids=$(eng ps -aq --filter "label=$label" 2>/dev/null || true)
    [[ -n "$ids" ]] && eng rm -f $ids >/dev/null 2>&1 || true
    ids=$(eng volume ls -q --filter "label=$label" 2>/dev/null || true)
    [[ -n "$ids" ]] && eng volume rm -f $ids >/dev/null 2>&1 || true
    for n in $(eng network ls -q --filter "label=$label" 2>/dev/null || true) "${PROJECT}_duo"; do
        eng network rm -f "$n" >/dev/null 2>&1 || true
    done
    rm -rf "$workdir"
    step_log+=("teardown: $(($(date +%s) - down_started)) s")
    write_result "$rc"
    exit "$rc"
}

write_result() {
    local total=$(($(date +%s) - started)) commit
    [[ $1 -eq 0 ]] && outcome=PASS
    commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$root" diff --quiet HEAD -- . ":(exclude)docker/smoke-result.txt" 2>/dev/null \
        || commit+=" (with local changes)"
    {
        echo "# docker/smoke.sh: last result (written by the script; do not edit)"
        echo "result: $outcome${failed_step:+ (failed in: $failed_step)}"
        echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "duration: ${total} s"
        echo "engine: $ENGINE ($engine_version)"
        echo "base image: $base_source"
        echo "images: ${images_version:-not built}"
        echo "commit: $commit"
        echo "host: $(uname -sr), $(nproc) CPUs"
        echo "dnskey set: ${dnskeys_before:-none}"
        echo "steps:"
        printf '  %s\n' "${step_log[@]}"
    } >"$RESULT"
    say "$outcome in ${total} s; result in ${RESULT#"$root"/}"
}

# From here on, whatever happens, teardown removes what this run made and writes the result.
trap teardown EXIT
trap 'exit 130' INT TERM

case "$ENGINE" in
podman)
    missing=()
    while read -r p; do
        [[ -z "$p" || "$p" == \#* ]] && continue
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done <"$here/smoke-packages.txt"
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # What podman needs on this kind of machine, kept out of the Dockerfiles and compose.yaml:
    # crun fails where cgroups run in hybrid mode, runc with cgroupfs works; the containers get
    # fixed ulimits because the machine may not raise them (ods-signerd asks for many files).
    cat >"$workdir/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    export CONTAINERS_CONF="$workdir/containers.conf"
    python3 -m venv "$workdir/venv"
    "$workdir/venv/bin/pip" install -q -r "$here/smoke-requirements.txt" 2>"$workdir/pip.log" \
        || { cat "$workdir/pip.log" >&2; exit 1; }
    compose() { "$workdir/venv/bin/podman-compose" -p "$PROJECT" -f "$here/compose.yaml" "$@"; }
    engine_version="$(podman --version), podman-compose $("$workdir/venv/bin/pip" show podman-compose | awk '/^Version/ {print $2}')"
    ;;
docker)
    compose() { docker compose -p "$PROJECT" -f "$here/compose.yaml" "$@"; }
    engine_version="$(docker --version), $(docker compose version)"
    ;;
*)
    echo "smoke: ENGINE must be podman or docker" >&2
    exit 2
    ;;
esac
eng() { "$ENGINE" "$@"; }

# A service's container, and commands in it with stdin passed through and the exit status kept
# (the engine's own exec: podman-compose 1.0.3's exec always exits 0).
cid() { eng ps -aq --filter "label=$label" --filter "label=com.docker.compose.service=$1" | head -1; }
on() {
    local c
    c=$(cid "$1")
    shift
    [[ -n "$c" ]] || return 1
    eng exec -i "$c" "$@"
}

# wait_in CONTAINER WHAT CONDITION: until the shell CONDITION holds in CONTAINER, at most $WAIT
# seconds, polled inside one exec (an exec per poll costs a runtime start each time).
wait_in() {
    local c=$1 what=$2 cond=$3
    # shellcheck disable=SC2016 # expanded by the container's shell
    if on "$c" sh -c 'end=$(($(date +%s) + $1))
        until eval "$2" >/dev/null 2>&1; do
            [ "$(date +%s)" -lt "$end" ] || exit 1
            sleep 3
        done' sh "$WAIT" "$cond"; then
        say "ready: $what"
    else
        say "gave up after ${WAIT} s waiting for $what"
        return 1
    fi
}

# --- the base image -----------------------------------------------------------------------------
# With a registry the build pulls it as usual; where none answers (this kind of machine reaches
# Debian's package archive but no image registry) make it with debootstrap from the Debian mirror
# apt uses here (DEBIAN_MIRROR overrides) and import it under the name the Dockerfiles use.
debian_mirror() {
    local m
    m=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | head -1 | awk '{print $2}') || true
    echo "${DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

step "base image"
if eng image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    base_source="$BASE_IMAGE present already"
elif timeout 120 "$ENGINE" pull "docker.io/library/$BASE_IMAGE" >/dev/null 2>&1; then
    # fully qualified: podman resolves no short name for a pull without a search registry
    base_source="docker.io/library/$BASE_IMAGE pulled"
else
    mirror=$(debian_mirror)
    say "no registry answers: debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$workdir/rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 \
        || { tail -20 "$workdir/debootstrap.log" >&2; exit 1; }
    # The updates and security suites, as Debian's own images have them.
    security=${mirror%/debian}/debian-security
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
        "$mirror" "$mirror" "$security" >"$workdir/rootfs/etc/apt/sources.list"
    rm -rf "$workdir/rootfs/var/cache/apt/archives/"*.deb "$workdir/rootfs/var/lib/apt/lists/"*
    tar -C "$workdir/rootfs" -c . | eng import - "$BASE_IMAGE" >/dev/null
    rm -rf "$workdir/rootfs"
    base_source="$BASE_IMAGE made with debootstrap from $mirror"
fi
say "base image: $base_source"

step "build images"
# The engine's build under the image names compose.yaml gives (so `up` uses them): the same
# Dockerfiles and context as `compose build`, with the engine's exit status.
# A TLS-inspecting proxy's CA (this kind of machine reaches PyPI only through one): the host's
# local CA certificates, for pip in the signer's build (EXTRA_CA_CERTS in its Dockerfile).
build_args=()
extra_ca=$(cat "${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"/*.crt 2>/dev/null || true)
[[ -n "$extra_ca" ]] && build_args=(--build-arg "EXTRA_CA_CERTS=$extra_ca")
for image in signer secondary; do
    eng build "${build_args[@]}" -f "docker/$image/Dockerfile" -t "ods-duo-$image" . \
        >"$workdir/build-$image.log" 2>&1 \
        || { tail -40 "$workdir/build-$image.log" >&2; exit 1; }
done
images_version=$(eng run --rm --entrypoint sh ods-duo-signer -c \
    'echo "ods-duo $(ods-duo --version | awk "{print \$NF}"), opendnssec $(dpkg-query -W -f="\${Version}" opendnssec), softhsm2 $(dpkg-query -W -f="\${Version}" softhsm2)"')
images_version+=", bind9 $(eng run --rm --entrypoint dpkg-query ods-duo-secondary -W -f='${Version}' bind9)"
say "images: $images_version"

step "compose up"
compose down -v >/dev/null 2>&1 || true       # nothing of an earlier run of this project
compose up -d >"$workdir/up.log" 2>&1 || { cat "$workdir/up.log" >&2; exit 1; }
signer_up='test -S /run/opendnssec/engine.sock && test -S /run/opendnssec/enforcer.sock'
wait_in a "node a's daemons" "$signer_up"
wait_in b "node b's daemons" "$signer_up"
# Each signer's relay: named on the node's address, port 1053 (the entrypoint starts it once the
# watcher's first relay sync wrote its zone list), serving the duo's catalog.
catalog=duo.catalog.invalid
relay_up() { echo "dig +norec +time=2 +tries=1 @$1 -p 1053 $catalog SOA | grep -q 'status: NOERROR'"; }
wait_in a "relay a ($A port 1053) serves $catalog" "$(relay_up $A)"
wait_in b "relay b ($B port 1053) serves $catalog" "$(relay_up $B)"

# The ssh transport from the controller (a) to b, set up as docs/ssh-transport.md says. Both keys
# travel through the engine's exec (the operator's console), never through the duo's network: b's
# host key is read on b itself and pinned in a's known_hosts; the controller's public key goes into
# b's authorized_keys behind the forced command, usable from a's address only.
pin_ssh() {
    local host_key controller_key
    on a sh -c 'install -d -m 0700 /etc/ods-duo/ssh && { test -s /etc/ods-duo/ssh/id_ed25519 ||
        ssh-keygen -q -t ed25519 -N "" -C ods-duo-controller -f /etc/ods-duo/ssh/id_ed25519; }'
    host_key=$(on b cat /etc/ssh/duo/ssh_host_ed25519_key.pub | awk '{print $1, $2}')
    echo "$B $host_key" | on a sh -c 'cat > /etc/ods-duo/ssh/known_hosts'
    controller_key=$(on a cat /etc/ods-duo/ssh/id_ed25519.pub)
    echo "command=\"/usr/local/bin/ods-duo --config /etc/ods-duo/duo.toml node serve-ssh --node b\",restrict,from=\"$A\" $controller_key" \
        | on b sh -c 'cat > /etc/ssh/duo/authorized_keys'
    say "b's host key pinned on a: $(echo "$B $host_key" | ssh-keygen -lf - | awk '{print $2}')"
}

# The KEK hand-over's pinning: b's one-time transport key fingerprint, read from b's own token on b
# (`kek offer`), is what the operator confirms on the controller (--confirm b=FINGERPRINT); the
# backup token pins only that key, so a key from the network alone never gets the KEK.
offer_b() {
    on b ods-duo --json kek offer --node b | python3 -c 'import json, sys; print(json.load(sys.stdin)["fingerprint"])'
}

step "ssh transport and KEK"
pin_ssh
on a ods-duo node status b >/dev/null     # the controller reaches b over ssh
fingerprint=$(offer_b)
say "node b's transport key (kek offer on b): $fingerprint"
on a ods-duo kek init --confirm "b=$fingerprint"

step "secondaries from the catalog"
# Rendered once, before there is any zone: statements (FILE) and the options fragment (FILE.options).
# From here on the secondaries learn every zone from the relays' catalog; nothing is rendered again.
for ns in ns1 ns2; do
    on a ods-duo bind-config --secondary "$ns" --output "/etc/bind/duo/$ns.conf"
done
ns_conf() {  # every file of a secondary's named config, with its change time, hashed
    # shellcheck disable=SC2016 # expanded by the container's shell
    on "$1" sh -c 'f="/etc/bind/named.conf /etc/bind/duo/$1.conf /etc/bind/duo/$1.conf.options /etc/bind/duo-transfer.key"
        { sha256sum $f; stat -L -c "%n %Z %Y" $f; } | sha256sum | cut -c1-16' sh "$1"
}
declare -A ns_conf_at_start
for ns in ns1 ns2; do
    ip=$NS1; [[ $ns == ns2 ]] && ip=$NS2
    wait_in a "$ns ($ip) has $catalog from the relays" \
        "dig +norec +time=2 +tries=1 @$ip $catalog SOA | grep -q 'status: NOERROR'"
    ns_conf_at_start[$ns]=$(ns_conf $ns)
    say "$ns's named config at start: ${ns_conf_at_start[$ns]}"
done

step "zone and keys"
on a sh -c "cat > /var/lib/ods-duo/a/$ZONE" <"$here/$ZONE"
on a ods-duo zone add "$ZONE" --file "/var/lib/ods-duo/a/$ZONE"
on a ods-duo key create "$ZONE"

step "signed on both signers and both secondaries"
# The signers' DNS listener answers SOA and transfers only (ODS): their copy is read by AXFR with the
# transfer key, as the secondaries and `ods-duo check` read it; the secondaries answer queries.
tsig=/etc/ods-duo/secrets/duo-transfer.key
signed_at_signer() { echo "dig -k $tsig +norec +time=3 +tries=1 @$1 $ZONE AXFR | grep -q 'RRSIG[[:space:]]*DNSKEY'"; }
signed_at_secondary() { echo "dig +dnssec +norec +time=3 +tries=1 @$1 $ZONE DNSKEY | grep -q 'RRSIG[[:space:]]*DNSKEY'"; }
wait_in a "$ZONE signed at a ($A)" "$(signed_at_signer $A)"
wait_in a "$ZONE signed at b ($B)" "$(signed_at_signer $B)"
wait_in a "$ZONE served signed by ns1 ($NS1)" "$(signed_at_secondary $NS1)"
wait_in a "$ZONE served signed by ns2 ($NS2)" "$(signed_at_secondary $NS2)"
dnskeys() {  # a signer's DNSKEY RRset, one key a line, sorted (from its AXFR)
    on a sh -c "dig -k $tsig +norec +time=5 +tries=2 @$1 $ZONE AXFR" \
        | awk '$4 == "DNSKEY" { $1 = $2 = $3 = ""; sub(/^ +/, ""); print }' | sort -u
}
dnskey_lines_before=$(dnskeys $A)
[[ -n "$dnskey_lines_before" ]] || { say "no DNSKEY in a's transfer"; exit 1; }
dnskeys_before=$(echo "$dnskey_lines_before" | md5sum | cut -c1-12)
if [[ "$(dnskeys $B)" != "$dnskey_lines_before" ]]; then
    say "a and b serve other DNSKEY sets"
    diff <(echo "$dnskey_lines_before") <(dnskeys $B) >&2 || true
    exit 1
fi
say "DNSKEY set ($(echo "$dnskey_lines_before" | wc -l) keys) $dnskeys_before on a and b"

step "learnt from the catalog, transferred with TSIG"
# Both relays serve the signed zone, with the key only.
for ip in $A $B; do
    on a sh -c "dig -k $tsig +norec +time=5 +tries=2 @$ip -p 1053 $ZONE AXFR" | grep -q 'RRSIG[[:space:]]*DNSKEY' \
        || { say "relay $ip:1053 does not serve $ZONE signed with the key"; exit 1; }
    if on a sh -c "dig +norec +time=5 +tries=1 @$ip -p 1053 $ZONE AXFR" | grep -q '[[:space:]]SOA[[:space:]]'; then
        say "relay $ip:1053 transferred $ZONE without the key"
        exit 1
    fi
done
say "relays a and b: $ZONE by AXFR with the key only"
for ns in ns1 ns2; do
    ip=$NS1; [[ $ns == ns2 ]] && ip=$NS2
    # named -g logs to the container's stderr.
    eng logs "$(cid $ns)" >"$workdir/$ns.log" 2>&1 || true
    # Its config is the one it started with, and names no zone: the zone came from the catalog.
    now=$(ns_conf $ns)
    [[ "$now" == "${ns_conf_at_start[$ns]}" ]] \
        || { say "$ns's named config changed after start (${ns_conf_at_start[$ns]} -> $now)"; exit 1; }
    if on $ns grep -rqF "$ZONE" /etc/bind/named.conf /etc/bind/duo/; then
        say "$ns's named config names $ZONE: not learnt from the catalog"
        exit 1
    fi
    grep -F "catz: adding zone '$ZONE' from catalog '$catalog' - success" "$workdir/$ns.log" >&2 \
        || { say "$ns did not add $ZONE from $catalog"; grep -F catz "$workdir/$ns.log" >&2; exit 1; }
    # BIND logs the key a zone transfer was signed with (zone.c: "transferred serial N: TSIG 'KEY'").
    grep -E "zone $ZONE/IN: transferred serial [0-9]+: TSIG 'duo-transfer'" "$workdir/$ns.log" >&2 \
        || { say "$ns: no TSIG-signed transfer of $ZONE"; grep -F "$ZONE" "$workdir/$ns.log" >&2; exit 1; }
done
say "ns1, ns2: $ZONE learnt from $catalog (named config as at start) and transferred with TSIG"

step "ods-duo check (a, b, ns1, ns2)"
# --timeout 30: a copy's server and a node's answer (over ssh for b) may be slow on a loaded
# 2-CPU machine; check's 5 s (10 s for a node) is meant for monitoring, not for this test.
on a ods-duo check --timeout 30 "$ZONE"

step "wipe signer b"
eng stop -t 60 "$(cid b)" >/dev/null      # SIGTERM: the entrypoint stops b's daemons by pid
eng rm -f "$(cid b)" >/dev/null
for v in b-ssh b-etc b-var b-softhsm b-duo; do
    eng volume rm -f "${PROJECT}_$v" >/dev/null
done
B_AWAIT_RESTORE=yes compose up -d --no-deps b >"$workdir/up-b.log" 2>&1 || { cat "$workdir/up-b.log" >&2; exit 1; }
wait_in b "the new b's sshd" 'test -s /etc/ssh/duo/ssh_host_ed25519_key.pub && test -s /run/sshd.pid'
if on b test -e /var/lib/opendnssec/kasp.db; then say "b is not wiped"; exit 1; fi

step "backup restore --node b"
pin_ssh                                   # a new machine: a new host key, pinned again from b itself
# The wiped b has no token to offer a transport key from until the restore's first step makes it:
# the first run stops at "copy KEK" (journalled, b stopped), the operator reads the fingerprint on
# b with `kek offer` and runs the restore again with --confirm, which finishes it. (On a terminal
# one run does: restore asks, and `kek offer` on b shows what to compare.)
if on a ods-duo backup restore --node b </dev/null >"$workdir/restore-1.log" 2>&1; then
    say "backup restore handed the KEK to b without a confirmed fingerprint"
    exit 1
fi
grep -q 'must be confirmed' "$workdir/restore-1.log" || { cat "$workdir/restore-1.log" >&2; exit 1; }
fingerprint=$(offer_b)
say "the new b's transport key (kek offer on b): $fingerprint"
on a ods-duo backup restore --node b --confirm "b=$fingerprint"

step "b signs with the same DNSKEY set"
wait_in a "$ZONE signed at the restored b ($B)" "$(signed_at_signer $B)"
dnskey_lines_after=$(dnskeys $B)
dnskeys_after=$(echo "$dnskey_lines_after" | md5sum | cut -c1-12)
if [[ "$dnskey_lines_after" != "$dnskey_lines_before" ]]; then
    say "restored b serves DNSKEY set $dnskeys_after, not $dnskeys_before"
    diff <(echo "$dnskey_lines_before") <(echo "$dnskey_lines_after") >&2 || true
    exit 1
fi
say "restored b serves the DNSKEY set $dnskeys_after ($(echo "$dnskey_lines_after" | wc -l) keys), as before"
on a ods-duo check --timeout 30 "$ZONE"

step "restart the restored b: watcher and relay"
# The restore started b's daemons but the container still waits (AWAIT_RESTORE): no watcher, no
# relay. A restart runs the normal entrypoint now that b has its database: node init (nothing to
# redo), the daemons, the watcher, then the relay, which must serve the zone again with the key.
eng restart -t 60 "$(cid b)" >/dev/null
wait_in b "node b's daemons after the restart" "$signer_up"
wait_in a "relay b ($B port 1053) serves $ZONE signed, with the key" \
    "dig -k $tsig +norec +time=3 +tries=1 @$B -p 1053 $ZONE AXFR | grep -q 'RRSIG[[:space:]]*DNSKEY'"
on a ods-duo check --timeout 30 "$ZONE"

current=""
step_log+=("restart the restored b: watcher and relay: $(($(date +%s) - step_started)) s")
outcome=PASS
