# shellcheck shell=bash
# Helpers shared by scripts/synflood.sh and scripts/soak.sh (sourced, not run).
#
# They run the namespace lab of scripts/lab.sh under a namespace prefix of their own
# (RVS_LAB_NS, default given by the caller), with their own state folder and control socket,
# so that they never tear down, or get torn down by, the default lab the tests use. Every
# process they start is tracked by PID and stopped on exit, failure and Ctrl-C included; the
# lab is removed by `lab.sh down`.
#
# hl_init PREFIX        settle the names (RVS_LAB_NS, RVS_LAB_DIR, RVS_SOCKET, HL_TMP); from
#                       then on hl_exit runs on exit, Ctrl-C and SIGTERM included
# hl_binaries           RVSD/RVSADM: as given, else built (cargo build --release) and copied
# hl_config CAP [GW]    an rvsd config: the default one with conntrack.capacity CAP and, if
#                       given, GW as the external port's gateway
# hl_up                 lab.sh up + start
# hl_bg NAME CMD...     start CMD in the background, tracked for cleanup
# hl_adm ARGS...        rvsadm against this lab's rvsd
# hl_counters FILE      all rvsd counters (rvsadm -L --counters: "name value" per line) into
#                       FILE; 1 when rvsd does not answer
# hl_get FILE NAME      one counter from such a file (0 if absent)
# hl_cleanup            stop what hl_bg started, lab.sh down, remove HL_TMP
# hl_exit               EXIT trap: hl_cleanup, keeping the exit status

# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HL_LAB=$RVS_ROOT/scripts/lab.sh
HL_PIDS=()
HL_TMP=
# Used by the scripts that source this file.
# shellcheck disable=SC2034
VIP=198.51.100.1
# shellcheck disable=SC2034
CLI_IP=198.51.100.10

hl_init() {
    local prefix=$1
    export RVS_LAB_NS=${RVS_LAB_NS:-$prefix}
    export RVS_LAB_DIR=${RVS_LAB_DIR:-/run/rvs-lab-$RVS_LAB_NS}
    export RVS_SOCKET=${RVS_SOCKET:-/run/rvs-$RVS_LAB_NS/rvs.sock}
    # shellcheck disable=SC2034
    NS_CLI=$RVS_LAB_NS-cli
    # shellcheck disable=SC2034
    NS_DIR=$RVS_LAB_NS-dir
    HL_TMP=$(mktemp -d "/tmp/rvs-$RVS_LAB_NS.XXXXXX")
    trap hl_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    chmod 755 "$HL_TMP"
    local others
    others=$(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^[a-z0-9]+-(cli|dir)$' |
        grep -v "^$RVS_LAB_NS-" | xargs || true)
    if [ -n "$others" ]; then
        warn "other labs are up ($others): they share this machine's CPUs, figures will be noisy"
    fi
}

hl_binaries() {
    if [ -z "${RVSD:-}" ] || [ -z "${RVSADM:-}" ]; then
        log "building release binaries (cargo build --release -p rvsd -p control)"
        run_cargo build --release -p rvsd -p control
        fix_target_owner
        # Private copies: a rebuild of target/ during the run does not swap them underneath.
        mkdir -p "$HL_TMP/bin"
        cp "$RVS_ROOT/target/release/rvsd" "$RVS_ROOT/target/release/rvsadm" "$HL_TMP/bin/"
        RVSD=${RVSD:-$HL_TMP/bin/rvsd}
        RVSADM=${RVSADM:-$HL_TMP/bin/rvsadm}
    fi
    export RVSD RVSADM
    [ -x "$RVSD" ] || die "rvsd not found at $RVSD"
    [ -x "$RVSADM" ] || die "rvsadm not found at $RVSADM"
}

hl_config() {
    local cap=$1 gw=${2:-}
    local cfg=$HL_TMP/rvs.toml
    "$RVSD" --print-default-config >"$cfg.in" || die "rvsd --print-default-config failed"
    awk -v cap="$cap" -v gw="$gw" '
        /^\[/ { section = $0 }
        section == "[conntrack]" && /^capacity *=/ { print "capacity = " cap; next }
        { print }
        gw != "" && /^addresses *= *\["198\.51\.100\.1\/24"\]/ { print "gateway = \"" gw "\"" }
    ' "$cfg.in" >"$cfg"
    grep -q "^capacity = $cap\$" "$cfg" || die "could not set conntrack.capacity in $cfg"
    export RVS_CONFIG=$cfg
}

hl_up() {
    "$HL_LAB" up
    "$HL_LAB" start
}

hl_bg() {
    local name=$1
    shift
    "$@" &
    HL_PIDS+=("$!")
    echo "$!" >"$HL_TMP/$name.pid"
}

hl_adm() {
    RVS_SOCKET=$RVS_SOCKET "$RVSADM" "$@"
}

hl_counters() {
    local out=$1
    if ! hl_adm -L --counters >"$out.tmp" 2>"$out.err"; then
        warn "rvsadm -L --counters failed: $(cat "$out.err")"
        return 1
    fi
    mv "$out.tmp" "$out"
}

hl_get() {
    awk -v n="$2" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }' "$1"
}

hl_cleanup() {
    local pid i
    for pid in "${HL_PIDS[@]}"; do
        # Our background jobs: their children (hping3, wrk, curl) first, then the job.
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${HL_PIDS[@]}"; do
        for ((i = 0; i < 30; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    done
    HL_PIDS=()
    "$HL_LAB" down >/dev/null 2>&1 || warn "lab.sh down failed (RVS_LAB_NS=$RVS_LAB_NS)"
    if [ -n "$HL_TMP" ] && [ -d "$HL_TMP" ] && [ -z "${RVS_KEEP_TMP:-}" ]; then
        rm -rf "$HL_TMP"
    fi
}

hl_exit() {
    local rc=$?
    trap - EXIT
    hl_cleanup
    exit "$rc"
}
