#!/usr/bin/env bash
# SYN flood against rvsd in the namespace lab, while established and new HTTP traffic goes on.
#
#   sudo scripts/synflood.sh
#
# Builds a lab of its own (namespaces synf-cli, synf-dir, ...; see scripts/lib/hostile-lab.sh),
# starts rvsd with a small connection table (RVS_FLOOD_CAPACITY, default 4096 entries) and the
# service TCP 198.51.100.1:80 rr over the two nginx real servers. Then, from the client
# namespace:
#
#  - wrk keeps RVS_FLOOD_WRK_CONNS (default 4) keep-alive connections busy for the whole run
#    (started before the flood: established traffic);
#  - a curl loop opens a new connection every 100 ms (new traffic during the flood);
#  - after 3 s, hping3 floods SYNs to the VIP for RVS_FLOOD_SECONDS (default 30) from every
#    source address of 203.0.113.0/24 in turn (hping3 -a, never --rand-source: only the
#    documentation range is ever used), RVS_FLOOD_PROCS (default 2) processes at one packet per
#    RVS_FLOOD_INTERVAL_US (default 50) microseconds each, a new source port per packet.
#
# The real servers answer the spoofed SYNs with SYN-ACKs; rvsd (external gateway: the client)
# sends them to the client namespace, which has a blackhole route for 203.0.113.0/24 and
# forwarding off, so they die there without an RST, as they would on the Internet.
#
# Printed: the flood's packets and rate, rvsd's counters over the flood (connections created,
# table occupancy, SYN_RECV evictions, drops by reason), the curl success rate and latency, and
# wrk's totals. Exit status 0 when wrk saw no errors and at least RVS_FLOOD_MIN_OK percent
# (default 99) of the curls succeeded.
set -euo pipefail
# shellcheck source=scripts/lib/hostile-lab.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/hostile-lab.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
need_root
CAPACITY=${RVS_FLOOD_CAPACITY:-4096}
SECONDS_FLOOD=${RVS_FLOOD_SECONDS:-30}
PROCS=${RVS_FLOOD_PROCS:-2}
INTERVAL_US=${RVS_FLOOD_INTERVAL_US:-50}
WRK_CONNS=${RVS_FLOOD_WRK_CONNS:-4}
MIN_OK=${RVS_FLOOD_MIN_OK:-99}
SLICE=${RVS_FLOOD_SLICE:-0.5}    # seconds per source address per hping3 process

need_tools hping3 wrk curl ip

hl_init synf
hl_binaries
hl_config "$CAPACITY" "$CLI_IP"
hl_up
ip -n "$NS_CLI" route add blackhole 203.0.113.0/24
hl_adm -A -t "$VIP:80" -s rr
hl_adm -a -t "$VIP:80" -r 192.0.2.2:80 -m
hl_adm -a -t "$VIP:80" -r 192.0.2.3:80 -m
ip netns exec "$NS_CLI" curl -sS --max-time 5 -o /dev/null "http://$VIP/" ||
    die "no HTTP answer through rvsd before the flood"

OUT=$HL_TMP
flood_proc() {
    # Source addresses first, first+PROCS, ... of 203.0.113.1-254, round and round.
    local first=$1 i=$1
    while :; do
        ip netns exec "$NS_CLI" timeout -s INT "$SLICE" \
            hping3 -q -S -p 80 -a "203.0.113.$i" -i "u$INTERVAL_US" "$VIP" \
            >>"$OUT/hping3.$first.log" 2>&1 || true
        i=$((i + PROCS))
        [ "$i" -le 254 ] || i=$first
    done
}

curl_loop() {
    while :; do
        ip netns exec "$NS_CLI" curl -s -o /dev/null --max-time 3 \
            -w '%{http_code} %{time_total}\n' "http://$VIP/" >>"$OUT/curl.log" 2>/dev/null ||
            echo "000 3" >>"$OUT/curl.log"
        sleep 0.1
    done
}

sampler() {
    local t=0
    while :; do
        hl_counters "$OUT/sample" 2>/dev/null &&
            echo "$t $(hl_get "$OUT/sample" conntrack.entries) $(hl_get "$OUT/sample" conntrack.evictions)" \
                >>"$OUT/occupancy.log"
        sleep 1
        t=$((t + 1))
    done
}

WRK_SECONDS=$((SECONDS_FLOOD + 8))
log "wrk: $WRK_CONNS keep-alive connections for ${WRK_SECONDS}s; curl: a new connection every 100 ms"
hl_bg wrk ip netns exec "$NS_CLI" wrk -t1 -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --timeout 2s \
    --latency "http://$VIP/" >"$OUT/wrk.log" 2>&1
sleep 3
hl_counters "$OUT/before" || die "rvsd does not answer the counters request"
: >"$OUT/curl.log"
hl_bg curl curl_loop
hl_bg sampler sampler
log "flood: $PROCS hping3 processes, one SYN per ${INTERVAL_US} us each, sources 203.0.113.1-254," \
    "${SECONDS_FLOOD}s"
start=$(date +%s.%N)
floods=()
for ((p = 1; p <= PROCS; p++)); do
    hl_bg "flood$p" flood_proc "$p"
    floods+=("$(cat "$HL_TMP/flood$p.pid")")
done
sleep "$SECONDS_FLOOD"
for pid in "${floods[@]}"; do
    pkill -INT -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
done
sleep 1
end=$(date +%s.%N)
hl_counters "$OUT/after" || die "rvsd does not answer the counters request"
curl_pid=$(cat "$HL_TMP/curl.pid")
kill -TERM "$curl_pid" 2>/dev/null || true
wrk_pid=$(cat "$HL_TMP/wrk.pid")
wait "$wrk_pid" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# report

sent=$(cat "$OUT"/hping3.*.log 2>/dev/null |
    awk '/packets transmitted/ { s += $1 } END { print s + 0 }')
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
d() { echo $(($(hl_get "$OUT/after" "$1") - $(hl_get "$OUT/before" "$1"))); }
max_entries=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$OUT/occupancy.log" 2>/dev/null || echo 0)
read -r c_total c_ok c_p50 c_p99 c_max c_slow < <(awk '
    { n++; t[n] = $2; if ($1 == 200) ok++; if ($2 >= 0.5) slow++ }
    END {
        if (n == 0) { print 0, 0, 0, 0, 0, 0; exit }
        # sort the times (insertion sort: a few hundred lines)
        for (i = 2; i <= n; i++) { v = t[i]; j = i - 1; while (j > 0 && t[j] > v) { t[j + 1] = t[j]; j-- } t[j + 1] = v }
        p99 = int(n * 0.99)
        if (p99 < 1) p99 = 1
        printf "%d %d %.4f %.4f %.4f %d\n", n, ok, t[int((n + 1) / 2)], t[p99], t[n], slow
    }' "$OUT/curl.log")
wrk_req=$(awk '/requests in/ { print $1 }' "$OUT/wrk.log")
wrk_rps=$(awk '/^Requests\/sec/ { print $2 }' "$OUT/wrk.log")
wrk_err=$(awk '/Socket errors/ { gsub(",", ""); s = $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$OUT/wrk.log")
wrk_p50=$(awk '/^ +50%/ { print $2 }' "$OUT/wrk.log")
wrk_p99=$(awk '/^ +99%/ { print $2 }' "$OUT/wrk.log")

echo
echo "== SYN flood: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(cpu_model)))"
echo "flood           $sent SYNs in ${elapsed}s ($(awk -v s="$sent" -v e="$elapsed" 'BEGIN { printf "%.0f", s / e }')/s), sources 203.0.113.1-254"
echo "conntrack       capacity $CAPACITY, max entries seen $max_entries, conns created $(d conns_created), SYN_RECV evictions $(d conntrack.evictions)"
echo "rvsd rx/tx      rx $(d rx_packets), tx $(d tx_packets), dnat $(d dnat), snat $(d snat)"
echo "rvsd drops      $(paste -d' ' "$OUT/before" "$OUT/after" | awk '$1 ~ /^drop\./ && $4 > $2 { printf "%s=%d ", substr($1, 6), $4 - $2 }')"
echo "curl (new conn) $c_ok/$c_total ok during the flood; time p50 ${c_p50}s p99 ${c_p99}s max ${c_max}s; $c_slow took >= 0.5 s (a SYN retransmission)"
echo "wrk (est.)      $wrk_req requests, $wrk_rps req/s, errors $wrk_err, latency p50 $wrk_p50 p99 $wrk_p99"
echo "occupancy       (s entries evictions) $(tr '\n' ';' <"$OUT/occupancy.log")"

ok=1
if [ "$c_total" -eq 0 ] || [ $((c_ok * 100)) -lt $((c_total * MIN_OK)) ]; then
    echo "FAIL: curl success $c_ok/$c_total below $MIN_OK%"
    ok=
fi
if [ "${wrk_err:-1}" != 0 ]; then
    echo "FAIL: wrk saw $wrk_err errors on established connections"
    ok=
fi
[ -n "$ok" ] && echo "PASS"
[ -n "$ok" ]
