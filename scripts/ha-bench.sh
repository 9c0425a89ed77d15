#!/usr/bin/env bash
# Takeover time of the two-director HA lab (scripts/lab.sh ha-up, docs/ha.md), measured from the
# client side: a UDP probe sends a datagram to the VIP every 10 ms from the client namespace
# (scripts/lib/ha_probe.py); each round makes a failover action on director A, and the takeover
# time is the time from the action to the first answer after it, the gap in service the time
# from the last answer before it to that first answer after. A round without an answer within
# --wait seconds is a "no takeover". A benchmark, not a test: it prints what it measured.
#
#   sudo scripts/ha-bench.sh [--rounds N] [--action kill|links] [--wait S] [--interval S]
#
#   --rounds N        failovers (default 20)
#   --action kill     kill -9 of director A's rvsd (default); `links`: all of A's links down
#   --wait S          seconds to wait for a takeover (default 10)
#   --interval S      the probe's interval (default 0.01)
#
# It builds its own HA lab (and takes it down at the end, Ctrl-C included), holding the lab's
# lock (/run/rvs-lab.lock) throughout. RVSD, RVSADM, RVSCTL and RVS_HEALTHD pick the binaries
# (default: a release build, as lab.sh does). Each round starts from `lab.sh ha-reset`: links
# up, both directors running, A the VRRP master, and the probe answered again; the takeover is
# VRRP's (B's rvs-healthd notices A's silence after Master_Down_Interval).
set -euo pipefail
umask 022
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ROUNDS=20
ACTION="kill"
WAIT=10
INTERVAL=0.01
LAB=$RVS_ROOT/scripts/lab.sh
VIP=198.51.100.1
UDP_PORT=9000
CLIENT_NS=rvs-cli

while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=${2:?}; shift ;;
    --action) ACTION=${2:?}; shift ;;
    --wait) WAIT=${2:?}; shift ;;
    --interval) INTERVAL=${2:?}; shift ;;
    -h | --help) usage_header; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done
case $ROUNDS in '' | *[!0-9]* | 0) die "--rounds must be a positive number" ;; esac
case $WAIT in '' | *[!0-9]* | 0) die "--wait must be a positive number of seconds" ;; esac
case $ACTION in kill | links) ;; *) die "--action must be kill or links" ;; esac
need_root
need_tools ip python3 awk flock

WORK=$(mktemp -d /tmp/rvs-ha-bench.XXXXXX)
PROBE_PID=

# lab.sh without the lock's descriptor, so that the daemons it starts never hold the lock.
lab() { bash "$LAB" "$@" 9>&-; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$PROBE_PID" ] && pid_alive "$PROBE_PID"; then
        kill -TERM "$PROBE_PID" 2>/dev/null || true
        wait "$PROBE_PID" 2>/dev/null || true
    fi
    lab down >/dev/null 2>&1 || warn "lab.sh down failed"
    rm -rf "$WORK"
    exit "$rc"
}

exec 9>/run/rvs-lab.lock
log "waiting for the lab's lock"
flock 9
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lab ha-up
lab ha-start

replies=$WORK/replies
: >"$replies"
ip netns exec "$CLIENT_NS" python3 "$RVS_LIB/ha_probe.py" --dst "$VIP:$UDP_PORT" \
    --interval "$INTERVAL" --out "$replies" >"$WORK/probe.out" 2>&1 9>&- &
PROBE_PID=$!

now() { date +%s.%N; }

# The first answer after time $1 (empty if none).
first_after() { awk -v t="$1" '$1 > t { print; exit }' "$replies"; }
# The last answer at or before time $1 (empty if none).
last_before() { awk -v t="$1" '$1 <= t { last = $1 } END { if (last != "") print last }' "$replies"; }

# Waits up to $2 seconds for an answer after time $1; prints it.
wait_answer() {
    local t=$1 secs=$2 end got
    end=$(awk -v a="$(now)" -v s="$secs" 'BEGIN { printf "%.6f", a + s }')
    while :; do
        got=$(first_after "$t")
        if [ -n "$got" ]; then
            echo "$got"
            return 0
        fi
        awk -v a="$(now)" -v e="$end" 'BEGIN { exit !(a < e) }' || return 1
        sleep 0.05
    done
}

results=$WORK/results
: >"$results"
printf '%-6s %-12s %-14s %s\n' round takeover_ms gap_ms note
for ((r = 1; r <= ROUNDS; r++)); do
    lab ha-reset >/dev/null 2>"$WORK/reset.err" || {
        cat "$WORK/reset.err" >&2
        die "round $r: lab.sh ha-reset failed"
    }
    t=$(now)
    wait_answer "$t" 10 >/dev/null || die "round $r: the probe is not answered through director A"
    sleep 0.5
    case $ACTION in
    kill) lab ha-kill A >/dev/null 2>&1 ;;
    links) lab ha-links A down >/dev/null 2>&1 ;;
    esac
    # The action is done (ha-kill waits for rvsd's death): no answer after this came through A.
    acted=$(now)
    if first=$(wait_answer "$acted" "$WAIT"); then
        before=$(last_before "$acted")
        read -r take gap < <(awk -v a="$acted" -v f="$first" -v b="${before:-$acted}" \
            'BEGIN { printf "%.1f %.1f\n", (f - a) * 1000, (f - b) * 1000 }')
        printf '%-6s %-12s %-14s\n' "$r" "$take" "$gap"
        echo "$take $gap" >>"$results"
    else
        printf '%-6s %-12s %-14s %s\n' "$r" - - "no takeover within ${WAIT}s"
        echo "none" >>"$results"
    fi
done

kill -TERM "$PROBE_PID" 2>/dev/null || true
wait "$PROBE_PID" 2>/dev/null || true
PROBE_PID=

echo
echo "ha-bench: $ROUNDS failovers, action $ACTION, takeover by VRRP (advert_int ${HA_ADVERT_INT:-1} s), probe every ${INTERVAL}s"
echo "probe: $(cat "$WORK/probe.out")"
echo "machine: $(nproc) CPUs, $(cpu_model); $(date -u +%Y-%m-%dT%H:%MZ)"
awk '
    $1 == "none" { none++; next }
    { n++; take[n] = $1; gap[n] = $2 }
    function sort(a, k,   i, j, x) {
        for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    }
    function pct(a, k, p,   i) { i = int((k - 1) * p + 0.5) + 1; return a[i] }
    END {
        printf "no takeover: %d of %d\n", none, n + none
        if (n == 0) exit
        sort(take, n); sort(gap, n)
        printf "takeover ms: min %.1f  median %.1f  p90 %.1f  max %.1f\n", take[1], pct(take, n, 0.5), pct(take, n, 0.9), take[n]
        printf "gap ms:      min %.1f  median %.1f  p90 %.1f  max %.1f\n", gap[1], pct(gap, n, 0.5), pct(gap, n, 0.9), gap[n]
    }' "$results"
