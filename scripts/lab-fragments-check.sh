#!/usr/bin/env bash
# Fragmented UDP through rvsd in a running lab (scripts/lab.sh up && scripts/lab.sh start).
#
# Starts a UDP echo service (scripts/lib/udp_echo.py) on FRAG_PORT in every real server, puts
# the service VIP:FRAG_PORT (round robin, masquerading, all real servers) into rvsd, and sends
# datagrams of each size in FRAG_SIZES from the client (MTU 1500: every one of them leaves in
# fragments), FRAG_COUNT per case:
#
#   request order     reply order       expected
#   kernel            kernel            answered: echo whole, from the VIP, servers alternate
#   inorder (raw)     kernel            answered (the raw fragment builder is right)
#   tail-reverse      tail-reverse      answered (later fragments out of order, first first)
#   reverse           kernel            FRAG_EARLY=drop: no answer, the request's later
#   kernel            reverse             fragments counted as drop.frag_no_first (the first
#                                         fragment arrives last); FRAG_EARLY=answer: answered
#
# and checks the answers and rvsd's fragment counters (frag_first, frag_followed,
# drop.frag_no_first) case by case. Exits 1 on any difference. The echo servers are stopped,
# and the service removed, on exit; `lab.sh down` also stops echo servers a killed run left
# (their pid files are in the lab's pids/ directory).
#
# Settings (environment): RVS_LAB_NS, RVS_LAB_DIR, RVS_SOCKET as for lab.sh; RVSADM (default
# target/release/rvsadm); FRAG_PORT (9001), FRAG_SIZES ("3000 9000"), FRAG_COUNT (4),
# FRAG_TIMEOUT (seconds to wait for each answer, 2), FRAG_EARLY (drop | answer).
set -euo pipefail
umask 022
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac

RVS_LAB_NS=${RVS_LAB_NS:-rvs}
RVS_LAB_DIR=${RVS_LAB_DIR:-/run/rvs-lab}
RVS_SOCKET=${RVS_SOCKET:-/run/rvs/rvs.sock}
RVSADM=${RVSADM:-$RVS_ROOT/target/release/rvsadm}
FRAG_PORT=${FRAG_PORT:-9001}
FRAG_SIZES=${FRAG_SIZES:-3000 9000}
FRAG_COUNT=${FRAG_COUNT:-4}
FRAG_TIMEOUT=${FRAG_TIMEOUT:-2}
FRAG_EARLY=${FRAG_EARLY:-drop}
PYTHON=${PYTHON:-python3}
ECHO_PY=$RVS_ROOT/scripts/lib/udp_echo.py

NS_CLI=$RVS_LAB_NS-cli
NS_DIR=$RVS_LAB_NS-dir
VIP=198.51.100.1
STATE=$RVS_LAB_DIR/frag-check

RS_NS=()
RS_IP=()
RS_NAME=()
ECHO_PIDS=()
SERVICE_ADDED=

adm() { RVS_SOCKET=$RVS_SOCKET "$RVSADM" "$@"; }

counter() {
    awk -v n="$2" '$1 == n { v = $2 } END { print v + 0 }' <<<"$1"
}

find_servers() {
    local ns ip
    for ns in $(ip netns list | awk '{ print $1 }' | grep -E "^$RVS_LAB_NS-rs[0-9]+\$" | sort -V); do
        ip=$(ip -n "$ns" -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
        [ -n "$ip" ] || die "no IPv4 address on eth0 in $ns"
        RS_NS+=("$ns")
        RS_IP+=("$ip")
        RS_NAME+=("${ns#"$RVS_LAB_NS"-}")
    done
    [ ${#RS_NS[@]} -gt 0 ] || die "no real servers ($RVS_LAB_NS-rsN): run 'scripts/lab.sh up' first"
}

# An echo server a killed run left behind (its pid file names it): stop it, by PID.
stop_leftover_echo() {
    local ns=$1 name=$2 f pid i
    f=$RVS_LAB_DIR/pids/udp-echo-$name
    [ -f "$f" ] || return 0
    read -r pid _ <"$f" || true
    if [ -n "${pid:-}" ] && pid_alive "$pid" && ip netns identify "$pid" 2>/dev/null | grep -qx "$ns"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$f"
}

start_echo() {
    local ns=$1 name=$2 pid i
    stop_leftover_echo "$ns" "$name"
    ip netns exec "$ns" "$PYTHON" "$ECHO_PY" serve --port "$FRAG_PORT" --name "$name" \
        </dev/null >>"$STATE/echo-$name.log" 2>&1 &
    pid=$!
    ECHO_PIDS+=("$pid")
    # Listening, and it is ours (not another program on the port).
    for ((i = 0; i < 50; i++)); do
        ! ip netns exec "$ns" ss -Hlunp "sport = :$FRAG_PORT" | grep -q "pid=$pid," || break
        pid_alive "$pid" || die "echo server died in $ns: $(cat "$STATE/echo-$name.log")"
        sleep 0.1
    done
    ip netns exec "$ns" ss -Hlunp "sport = :$FRAG_PORT" | grep -q "pid=$pid," ||
        die "echo server (pid $pid) not listening on :$FRAG_PORT in $ns"
    # lab.sh's format ("PID NAMESPACE COMM"), so that `lab.sh down` stops it after a kill.
    echo "$pid $ns $(cat "/proc/$pid/comm")" >"$RVS_LAB_DIR/pids/udp-echo-$name"
}

cleanup() {
    local rc=$? pid i
    trap - EXIT
    if [ -n "$SERVICE_ADDED" ]; then
        adm -D -u "$VIP:$FRAG_PORT" || warn "could not remove service $VIP:$FRAG_PORT"
    fi
    for pid in "${ECHO_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${ECHO_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for i in "${RS_NAME[@]}"; do
        rm -f "$RVS_LAB_DIR/pids/udp-echo-$i"
    done
    exit "$rc"
}

FAILED=0
SUMMARY=()

# run_case SIZE REQUEST_ORDER REPLY_ORDER: one case; checks answers and counter deltas.
run_case() {
    local size=$1 req=$2 rep=$3
    local before after out line sent=0 answered=0 req_frags=0 reply_frags=0 servers=-
    local want_answered want_first want_followed want_nofirst early=
    local d_first d_followed d_nofirst problems=()
    before=$(adm -L --counters)
    out=$(ip netns exec "$NS_CLI" "$PYTHON" "$ECHO_PY" ask --dst "$VIP:$FRAG_PORT" \
        --size "$size" --count "$FRAG_COUNT" --order "$req" --reply-order "$rep" \
        --timeout "$FRAG_TIMEOUT" --name-len "${#RS_NAME[0]}") || die "probe failed: $out"
    after=$(adm -L --counters)
    sed '/^result /d; s/^/  /' <<<"$out"
    line=$(grep '^result ' <<<"$out") || die "probe printed no result: $out"
    local kv
    for kv in ${line#result }; do
        case $kv in
        sent=*) sent=${kv#*=} ;;
        answered=*) answered=${kv#*=} ;;
        req_frags=*) req_frags=${kv#*=} ;;
        reply_frags=*) reply_frags=${kv#*=} ;;
        servers=*) servers=${kv#*=} ;;
        esac
    done
    d_first=$(($(counter "$after" frag_first) - $(counter "$before" frag_first)))
    d_followed=$(($(counter "$after" frag_followed) - $(counter "$before" frag_followed)))
    d_nofirst=$(($(counter "$after" drop.frag_no_first) - $(counter "$before" drop.frag_no_first)))

    local n=$FRAG_COUNT
    [ "$req" = reverse ] && early=request
    [ "$rep" = reverse ] && early=reply
    if [ -z "$early" ] || [ "$FRAG_EARLY" = answer ]; then
        want_answered=$n
    else
        want_answered=0
    fi
    [ "$answered" -eq "$want_answered" ] || problems+=("answered $answered of $sent, expected $want_answered")
    if [ -z "$early" ]; then
        # A first fragment each way per datagram, every other fragment follows it.
        want_first=$((2 * n))
        want_followed=$((n * (req_frags - 1 + reply_frags - 1)))
        want_nofirst=0
    elif [ "$FRAG_EARLY" = answer ]; then
        want_first=''
        want_followed=''
        want_nofirst=0
    elif [ "$early" = request ]; then
        # The request's later fragments come before its first: dropped; no reply.
        want_first=$n
        want_followed=0
        want_nofirst=$((n * (req_frags - 1)))
    else
        want_first=$((2 * n))
        want_followed=$((n * (req_frags - 1)))
        want_nofirst=$((n * (reply_frags - 1)))
    fi
    [ -z "$want_first" ] || [ "$d_first" -eq "$want_first" ] ||
        problems+=("frag_first +$d_first, expected +$want_first")
    [ -z "$want_followed" ] || [ "$d_followed" -eq "$want_followed" ] ||
        problems+=("frag_followed +$d_followed, expected +$want_followed")
    [ "$d_nofirst" -eq "$want_nofirst" ] ||
        problems+=("drop.frag_no_first +$d_nofirst, expected +$want_nofirst")
    if [ "$want_answered" -eq "$n" ] && [ ${#RS_NS[@]} -gt 1 ] && [ "$n" -gt 1 ]; then
        # New source ports, round robin: consecutive answers from different servers.
        local prev='' s
        for s in ${servers//,/ }; do
            [ "$s" != "$prev" ] || problems+=("two answers in a row from $s (round robin)")
            prev=$s
        done
    fi

    local verdict=ok
    if [ ${#problems[@]} -gt 0 ]; then
        verdict="FAILED: $(printf '%s; ' "${problems[@]}")"
        FAILED=1
    fi
    SUMMARY+=("$(printf '%5s B  request %-12s reply %-12s frags %s/%s  answered %s/%s  frag_first +%s frag_followed +%s drop.frag_no_first +%s  %s' \
        "$size" "$req" "$rep" "$req_frags" "$reply_frags" "$answered" "$sent" \
        "$d_first" "$d_followed" "$d_nofirst" "$verdict")")
    printf '%s\n' "${SUMMARY[-1]}"
}

main() {
    need_root
    case $FRAG_EARLY in drop | answer) ;; *) die "FRAG_EARLY must be drop or answer" ;; esac
    [ -x "$RVSADM" ] || die "rvsadm not found at $RVSADM (set RVSADM or build it)"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    if [ ! -e "/run/netns/$NS_CLI" ] || [ ! -e "/run/netns/$NS_DIR" ]; then
        die "no lab with prefix $RVS_LAB_NS: run 'scripts/lab.sh up' and 'scripts/lab.sh start'"
    fi
    adm -L -n >/dev/null || die "rvsd does not answer on $RVS_SOCKET: run 'scripts/lab.sh start'"
    find_servers
    [ "$(ip -n "$NS_CLI" -o link show dev eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')" = 1500 ] ||
        die "the client's eth0 must have MTU 1500 (the sizes and fragment counts assume it)"
    mkdir -p "$STATE" "$RVS_LAB_DIR/pids"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local i size
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        start_echo "${RS_NS[i]}" "${RS_NAME[i]}"
    done
    # The service is this check's own: a leftover of a killed run is replaced.
    adm -D -u "$VIP:$FRAG_PORT" 2>/dev/null || true
    adm -A -u "$VIP:$FRAG_PORT" -s rr
    SERVICE_ADDED=1
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        adm -a -u "$VIP:$FRAG_PORT" -r "${RS_IP[i]}:$FRAG_PORT" -m
    done
    log "echo servers on :$FRAG_PORT in ${RS_NS[*]}; service $VIP:$FRAG_PORT; FRAG_EARLY=$FRAG_EARLY"

    for size in $FRAG_SIZES; do
        run_case "$size" kernel kernel
        run_case "$size" inorder kernel
        run_case "$size" tail-reverse tail-reverse
        run_case "$size" reverse kernel
        run_case "$size" kernel reverse
    done
    echo
    echo "summary (FRAG_COUNT=$FRAG_COUNT datagrams per case):"
    printf '  %s\n' "${SUMMARY[@]}"
    if [ "$FAILED" -ne 0 ]; then
        log "FAILED"
        return 1
    fi
    log "all cases as expected"
}

main "$@"
