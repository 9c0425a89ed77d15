#!/usr/bin/env bash
# Soak: minutes of HTTP load through rvsd while real servers are removed, re-added and
# reweighted every few seconds; then checks that no request failed on the server that stayed
# and that rvsd's counters add up.
#
#   sudo scripts/soak.sh                      # 300 s
#   sudo RVS_SOAK_SECONDS=60 scripts/soak.sh
#
# Builds a lab of its own (namespaces soak-cli, soak-dir, ...; scripts/lib/hostile-lab.sh) with
# three nginx real servers, and the service TCP 198.51.100.1:80 wrr over rs1, rs2, rs3. rs1 is
# the stable server: it is reweighted (1..3) but never removed. rs2 and rs3 are removed,
# re-added and reweighted, one change every RVS_SOAK_CHURN seconds (default 3). As an operator
# does (and as the attribution below needs), a server is quiesced (weight 0: no new
# connections, existing ones go on) one step before it is removed; RVS_SOAK_QUIESCE=0 removes
# servers abruptly instead, and then a connection opened to a server just before its removal
# may fail before its first answer: such failures are reported as unattributed, not failed.
#
# Load: wrk with RVS_SOAK_CONNS threads of one keep-alive connection each (default 6), and a Lua
# script that attributes every failed request to a real server: each thread owns one connection
# at a time; the body of each answer names the real server ("rs1"), so the connection's server is
# the one that answered last on it; a request that got no answer before wrk sent the next one
# (wrk reconnects after an error) failed on that server. A failure on a connection that had no
# answer yet is "unattributed" (counted as a failure of the run). nginx closes a keep-alive
# connection after RVS_SOAK_KEEPALIVE_REQUESTS requests (default 100000, some 15 s here: the
# script reloads the lab's nginx with that, so that connections are still open on a server when
# it is removed) and says "Connection: close"; the next connection starts afresh.
#
# A removed server's connections go on to their end (expire_nodest_conn 0, the default), so
# none should fail; with expire_nodest_conn 1 the client's next segment on such a connection is
# answered with a RST, wrk sees a read error and reconnects, and the new connection is
# scheduled on a server that is there. The client namespace sets net.ipv4.tcp_retries2=3 so
# that a connection that does hang gives up after about 3 s (instead of 15 min).
#
# Checks (exit status 0 when all hold):
#  - no failed request on rs1, no unattributed failure;
#  - answers came from rs1 and from the churned servers;
#  - rvsd's counters add up once the load has stopped:
#      rx_packets + arp_requests + garp_sent + icmp_*_sent + tcp_rst_sent + from_kernel
#          = tx_packets + sum(drop.*) + to_kernel
#    (docs/packet-verdicts.md, "Accounting").
set -euo pipefail
# shellcheck source=scripts/lib/hostile-lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/hostile-lab.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
need_root
DURATION=${RVS_SOAK_SECONDS:-300}
QUIESCE=${RVS_SOAK_QUIESCE:-1}
CHURN=${RVS_SOAK_CHURN:-3}
CONNS=${RVS_SOAK_CONNS:-6}
CAPACITY=${RVS_SOAK_CAPACITY:-65536}
KEEPALIVE_REQUESTS=${RVS_SOAK_KEEPALIVE_REQUESTS:-100000}
need_tools wrk curl ip

export RVS_LAB_SERVERS=3
hl_init soak
hl_binaries
hl_config "$CAPACITY"
hl_up
ip netns exec "$NS_CLI" sh -c 'echo 3 > /proc/sys/net/ipv4/tcp_retries2'
for i in 1 2 3; do
    dir=$RVS_LAB_DIR/rs$i
    sed -i "s/^\( *keepalive_timeout .*;\)\$/\1\n    keepalive_requests $KEEPALIVE_REQUESTS;/" "$dir/nginx.conf"
    grep -q "keepalive_requests $KEEPALIVE_REQUESTS;" "$dir/nginx.conf" ||
        die "could not set keepalive_requests in $dir/nginx.conf"
    ip netns exec "$RVS_LAB_NS-rs$i" "${NGINX:-nginx}" -q -e "$dir/error.log" -p "$dir/" \
        -c "$dir/nginx.conf" -s reload ||
        die "nginx reload failed in $RVS_LAB_NS-rs$i"
done
sleep 1
SVC="$VIP:80"
RS1=192.0.2.2:80
RS2=192.0.2.3:80
RS3=192.0.2.4:80
hl_adm -A -t "$SVC" -s wrr
hl_adm -a -t "$SVC" -r "$RS1" -m -w 1
hl_adm -a -t "$SVC" -r "$RS2" -m -w 1
hl_adm -a -t "$SVC" -r "$RS3" -m -w 1
for i in 1 2 3; do
    ip netns exec "$NS_CLI" curl -sS --max-time 5 -o /dev/null "http://$VIP/" ||
        die "no HTTP answer through rvsd before the soak"
done

OUT=$HL_TMP
cat >"$OUT/soak.lua" <<'EOF'
-- One connection per thread (wrk -tN -cN). See scripts/soak.sh for the attribution rule.
local threads = {}

function setup(thread)
    -- wrk calls request() once on the first thread before it starts, to check the request:
    -- that call is no request sent.
    if #threads == 0 then
        thread:set("verify_call", true)
    end
    table.insert(threads, thread)
end

function init(args)
    last = nil        -- the server that answered last on this thread's connection
    pending = false   -- a request is out and unanswered
    ok = {}
    fail = {}
    unattributed = 0
end

function request()
    if verify_call then
        verify_call = false
        return wrk.format(nil, "/")
    end
    if pending then
        if last then
            fail[last] = (fail[last] or 0) + 1
        else
            unattributed = unattributed + 1
        end
        last = nil    -- wrk reconnected: a new connection, server unknown
    end
    pending = true
    return wrk.format(nil, "/")
end

function response(status, headers, body)
    pending = false
    local s = body and body:match("^(rs%d+)") or nil
    if status ~= 200 or not s then
        s = "bad-" .. tostring(status)
    end
    ok[s] = (ok[s] or 0) + 1
    last = s
    local c = headers["Connection"] or headers["connection"]
    if c and c:lower() == "close" then
        last = nil
    end
end

function done(summary, latency, requests)
    local okt, failt, un = {}, {}, 0
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("ok") or {}) do okt[k] = (okt[k] or 0) + v end
        for k, v in pairs(t:get("fail") or {}) do failt[k] = (failt[k] or 0) + v end
        un = un + (t:get("unattributed") or 0)
    end
    for k, v in pairs(okt) do io.write(string.format("SOAK ok %s %d\n", k, v)) end
    for k, v in pairs(failt) do io.write(string.format("SOAK fail %s %d\n", k, v)) end
    io.write(string.format("SOAK unattributed %d\n", un))
end
EOF

churn() {
    # rs1 is only ever reweighted; rs2 and rs3 come and go ("quiesce" steps set weight 0
    # before a removal; RVS_SOAK_QUIESCE=0 makes them plain reweights).
    local q2="-e -t $SVC -r $RS2 -m -w 0" q3="-e -t $SVC -r $RS3 -m -w 0"
    if [ "$QUIESCE" = 0 ]; then
        q2="-e -t $SVC -r $RS2 -m -w 2"
        q3="-e -t $SVC -r $RS3 -m -w 1"
    fi
    local steps=(
        "$q2"
        "-d -t $SVC -r $RS2"
        "-e -t $SVC -r $RS1 -m -w 2"
        "-a -t $SVC -r $RS2 -m -w 1"
        "-e -t $SVC -r $RS3 -m -w 3"
        "$q3"
        "-d -t $SVC -r $RS3"
        "-e -t $SVC -r $RS1 -m -w 1"
        "-a -t $SVC -r $RS3 -m -w 2"
        "-e -t $SVC -r $RS2 -m -w 4"
        "-e -t $SVC -r $RS1 -m -w 3"
        "-e -t $SVC -r $RS2 -m -w 1"
    )
    local i=0 step
    while :; do
        sleep "$CHURN"
        step=${steps[i % ${#steps[@]}]}
        # shellcheck disable=SC2086 # the step is a word list
        if hl_adm $step >>"$OUT/churn.err" 2>&1; then
            echo "$(date +%s) ok   rvsadm $step" >>"$OUT/churn.log"
        else
            echo "$(date +%s) FAIL rvsadm $step" >>"$OUT/churn.log"
        fi
        i=$((i + 1))
    done
}

log "soak: wrk $CONNS connections for ${DURATION}s, one change every ${CHURN}s"
hl_bg churn churn
hl_bg wrk ip netns exec "$NS_CLI" wrk -t"$CONNS" -c"$CONNS" -d"${DURATION}s" --timeout 5s \
    --latency -s "$OUT/soak.lua" "http://$VIP/" >"$OUT/wrk.log" 2>&1
wrk_pid=$(cat "$HL_TMP/wrk.pid")
wait "$wrk_pid" || true
churn_pid=$(cat "$HL_TMP/churn.pid")
kill -TERM "$churn_pid" 2>/dev/null || true
hl_adm -L -n --stats >"$OUT/stats.txt" 2>&1 || true

# Counters once nothing moves: held frames resolve or drop within 1 s.
sleep 3
prev=
for i in $(seq 1 20); do
    hl_counters "$OUT/counters" || die "rvsd does not answer the counters request"
    cur=$(awk '$1 == "rx_packets" || $1 == "tx_packets" { printf "%s ", $2 }' "$OUT/counters")
    [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 1
done

# ---------------------------------------------------------------------------------------------
# report

g() { hl_get "$OUT/counters" "$1"; }
rx=$(g rx_packets)
tx=$(g tx_packets)
gen=$(($(g arp_requests) + $(g garp_sent) + $(g icmp_time_exceeded_sent) \
    + $(g icmp_frag_needed_sent) + $(g icmp_port_unreach_sent) + $(g tcp_rst_sent) \
    + $(g from_kernel)))
# Frames sent up to a kernel twin leave the accounting as drops do.
drops=$(($(awk '$1 ~ /^drop\./ { s += $2 } END { print s + 0 }' "$OUT/counters") + $(g to_kernel)))
ok_rs1=$(awk '$1 == "SOAK" && $2 == "ok" && $3 == "rs1" { print $4 }' "$OUT/wrk.log")
ok_other=$(awk '$1 == "SOAK" && $2 == "ok" && $3 != "rs1" { s += $4 } END { print s + 0 }' "$OUT/wrk.log")
fail_rs1=$(awk '$1 == "SOAK" && $2 == "fail" && $3 == "rs1" { print $4 }' "$OUT/wrk.log")
fail_other=$(awk '$1 == "SOAK" && $2 == "fail" && $3 != "rs1" { s += $4 } END { print s + 0 }' "$OUT/wrk.log")
unattr=$(awk '$1 == "SOAK" && $2 == "unattributed" { print $3 }' "$OUT/wrk.log")
changes=$(grep -c ' ok ' "$OUT/churn.log" 2>/dev/null || echo 0)
bad_changes=$(grep -c ' FAIL ' "$OUT/churn.log" 2>/dev/null || true)

echo
echo "== soak: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(cpu_model)), ${DURATION}s"
echo "wrk            $(awk '/requests in/ { print $1, "requests in", $4 }' "$OUT/wrk.log") $(awk '/^Requests\/sec/ { print "(" $2 " req/s)" }' "$OUT/wrk.log"); $(grep -E 'Socket errors|Non-2xx' "$OUT/wrk.log" | xargs)"
echo "latency        $(awk '/^ +(50|90|99)%/ { printf "p%s %s ", $1, $2 }' "$OUT/wrk.log" | tr -d '%')"
echo "answers        $(awk '$1 == "SOAK" && $2 == "ok" { printf "%s=%s ", $3, $4 }' "$OUT/wrk.log")"
echo "failures       $(awk '$1 == "SOAK" && $2 == "fail" { printf "%s=%s ", $3, $4 }' "$OUT/wrk.log")unattributed=$unattr"
echo "churn          $changes changes applied, ${bad_changes:-0} refused (every ${CHURN}s, quiesce before removal: $([ "$QUIESCE" = 0 ] && echo no || echo yes))"
echo "rvsd           rx $rx + generated $gen = $((rx + gen)); tx $tx + drops and to_kernel $drops = $((tx + drops))"
echo "ports          $(awk '$1 ~ /^port\./ { printf "%s=%s ", substr($1, 6), $2 }' "$OUT/counters")"
echo "drops          $(awk '$1 ~ /^drop\./ && $2 > 0 { printf "%s=%s ", substr($1, 6), $2 }' "$OUT/counters")"
echo "events         $(awk '$1 !~ /^(drop|port|conntrack|frag)\./ && $1 !~ /_packets$/ && $2 > 0 { printf "%s=%s ", $1, $2 }' "$OUT/counters")"
echo "conntrack      entries $(g conntrack.entries) of $(g conntrack.capacity), SYN_RECV evictions $(g conntrack.evictions)"

ok=1
if [ "${fail_rs1:-0}" != 0 ] && [ -n "${fail_rs1:-}" ]; then
    echo "FAIL: $fail_rs1 requests failed on rs1, the server that stayed"
    ok=
fi
if [ "${unattr:-x}" != 0 ]; then
    if [ "$QUIESCE" = 0 ] && [ -n "$unattr" ]; then
        echo "note: $unattr failed requests before a first answer (abrupt removals, RVS_SOAK_QUIESCE=0)"
    else
        echo "FAIL: ${unattr:-?} failed requests could not be attributed to a server"
        ok=
    fi
fi
if [ -z "${ok_rs1:-}" ] || [ "${ok_rs1:-0}" -eq 0 ] || [ "$ok_other" -eq 0 ]; then
    echo "FAIL: answers from rs1 (${ok_rs1:-0}) and from the churned servers ($ok_other) expected"
    ok=
fi
if [ $((rx + gen)) -ne $((tx + drops)) ]; then
    echo "FAIL: counters do not add up (rx + generated $((rx + gen)) != tx + drops + to_kernel $((tx + drops)))"
    ok=
fi
[ "$changes" -gt 0 ] || {
    echo "FAIL: no change was applied"
    ok=
}
echo "failed requests on removed servers (expected): $fail_other"
[ -n "$ok" ] && echo "PASS"
[ -n "$ok" ]
