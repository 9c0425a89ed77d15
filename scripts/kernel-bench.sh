#!/usr/bin/env bash
# Kernel baseline (issue 6), first cut: the same UDP flood through the namespace lab
# (scripts/lab.sh) with the Linux kernel as director (--kernel: nftables DNAT round robin, SNAT
# by conntrack) and then with rvsd (net_af_packet on the same veths), delivered pps counted on
# the real servers' eth0 (rx_packets), offered pps on the client's eth0 (tx_packets). Writes
# its section of benches/RESULTS.md (<!-- kernel-bench:begin --> ... <!-- kernel-bench:end -->).
#
#   sudo scripts/kernel-bench.sh [--out FILE] [--duration S]
#
# The load generator is hping3 --flood (one thread, one sendto per packet, source port
# incremented per packet) from rvs-cli to VIP 198.51.100.1:9000. LIMIT: when offered ~=
# delivered, the generator, not the director, is the bottleneck, and the ratio says little
# about the directors; the section says so. Over veth the kernel director's forwarding runs in
# softirq on the sender's CPU, while rvsd busy-polls a core of its own.
# Only the lab's namespaces and documentation addresses; the lab is removed on exit.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_root

OUT=$RVS_ROOT/benches/RESULTS.md
DUR=5
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift ;;
    --duration) DUR=$2; shift ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done
command -v hping3 >/dev/null || die "hping3 not found (apt-get install hping3)"
LAB=$RVS_ROOT/scripts/lab.sh
RVSADM=${RVSADM:-$RVS_ROOT/target/release/rvsadm}
export RVS_SOCKET=${RVS_SOCKET:-/run/rvs/rvs.sock}
trap '"$LAB" down >/dev/null 2>&1 || true' EXIT

rx() {
    local s=0 n ns
    for ns in rvs-rs1 rvs-rs2; do
        n=$(ip netns exec "$ns" cat /sys/class/net/eth0/statistics/rx_packets)
        s=$((s + n))
    done
    echo "$s"
}
tx() { ip netns exec rvs-cli cat /sys/class/net/eth0/statistics/tx_packets; }

# flood NAME: prints "NAME offered_pps delivered_pps load"
flood() {
    local a b t0 t1
    a=$(rx)
    t0=$(tx)
    ip netns exec rvs-cli timeout -s INT "$DUR" hping3 --udp -p 9000 --flood -q -d 18 198.51.100.1 \
        >/dev/null 2>&1 || true
    b=$(rx)
    t1=$(tx)
    echo "$1 $(((t1 - t0) / DUR)) $(((b - a) / DUR)) $(cut -d' ' -f1 /proc/loadavg)"
}

"$LAB" down >/dev/null 2>&1 || true
"$LAB" up --kernel >&2
K=$(flood kernel)
"$LAB" down >&2
"$LAB" up >&2
"$LAB" start >&2
"$RVSADM" -A -u 198.51.100.1:9000 -s rr
"$RVSADM" -a -u 198.51.100.1:9000 -r 192.0.2.2:9000 -m -w 1
"$RVSADM" -a -u 198.51.100.1:9000 -r 192.0.2.3:9000 -m -w 1
R=$(flood rvs)
"$LAB" down >&2

python3 - "$OUT" "$K" "$R" "$DUR" "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import sys
out, k, r, dur, nproc, cpu, date, commit = sys.argv[1:]
k, r = k.split(), r.split()
L = ["## Kernel baseline over the lab's veths (kernel-bench)", ""]
L.append(f"Written by `scripts/kernel-bench.sh` on {date}, commit {commit}; {nproc} CPUs, {cpu}.")
L.append("")
L.append(f"`hping3 --udp -p 9000 --flood -d 18 198.51.100.1` from rvs-cli for {dur} s (one thread; "
         "source port incremented per packet), the director round robin over 192.0.2.2-3:9000 "
         "(kernel: `scripts/lab.sh up --kernel`, nftables DNAT; rvs: `scripts/lab.sh up; start`, "
         "rvsd on net_af_packet, `rvsadm -A -u 198.51.100.1:9000 -s rr` + 2 `-m` real servers). "
         "Offered = client eth0 tx_packets/s, delivered = real servers' eth0 rx_packets/s.")
L.append("")
L.append("| director | offered pps | delivered pps | load (1 min) |")
L.append("|---|---|---|---|")
for x in (k, r):
    L.append(f"| {x[0]} | {int(x[1]):,} | {int(x[2]):,} | {x[3]} |")
ratio = int(r[2]) / int(k[2]) if int(k[2]) else float("nan")
L.append("")
L.append(f"rvs / kernel delivered: {ratio:.2f}. **Generator-bound**: a single-threaded hping3 "
         "offers only what it can send, and delivered is close to offered for both directors, so "
         "this does not measure either director's capacity; a faster source (rvs-pktgen on "
         "net_af_packet vdevs in rvs-cli and a reflector namespace) is still to do.")
BEGIN, END = "<!-- kernel-bench:begin -->", "<!-- kernel-bench:end -->"
section = BEGIN + "\n" + "\n".join(L) + "\n" + END + "\n"
try:
    old = open(out).read()
except FileNotFoundError:
    old = ""
b, e = old.find(BEGIN), old.find(END)
if b >= 0 and e > b:
    new = old[:b] + section + old[e + len(END):].lstrip("\n")
elif old:
    new = old.rstrip("\n") + "\n\n" + section
else:
    new = section
open(out, "w").write(new)
print("\n".join(L))
PY
