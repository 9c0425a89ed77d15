# shellcheck shell=bash
# shellcheck disable=SC2034 # STOP_RC, PIDS and the options' variables belong to the sourcing script
# Shared by the traffic benchmarks (scripts/bench.sh, scripts/kernel-bench.sh); source it after
# lib/common.sh. The caller keeps the PIDs it started in the array PIDS.

# bench_option ARGS...: one of the options both benchmarks take, at $1: --out FILE (OUT),
# --no-build (BUILD=), --flows LIST (FLOWS), --warmup S (WARMUP), --duration S (DURATION),
# --only GLOB (ONLY), -h / --help (the usage, then exit 0); anything else is refused. Sets
# OPT_WORDS to the number of words it took.
bench_option() {
    OPT_WORDS=2
    case $1 in
    --out) OUT=$2 ;;
    --flows) FLOWS=$2 ;;
    --warmup) WARMUP=$2 ;;
    --duration) DURATION=$2 ;;
    --only) ONLY=$2 ;;
    --no-build) BUILD='' OPT_WORDS=1 ;;
    -h | --help)
        usage_header
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
}

# NICE (RVS_BENCH_NICE, default -20) and NICE_CMD, the prefix that runs a benchmark's
# processes at that niceness (empty for 0).
bench_nice() {
    NICE=${RVS_BENCH_NICE:--20}
    NICE_CMD=()
    [ "$NICE" = 0 ] || NICE_CMD=(nice -n "$NICE")
}

# Exit unless hugetlbfs is mounted on /dev/hugepages with 256 free 2 MB pages or more (what
# the benchmark's DPDK processes take; scripts/setup.sh reserves them).
need_hugepages() {
    local free_pages
    free_pages=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
    [ "${free_pages:-0}" -ge 256 ] ||
        die "only ${free_pages:-0} free 2 MB hugepages (need 256+; run scripts/setup.sh)"
    mountpoint -q /dev/hugepages || die "hugetlbfs is not mounted on /dev/hugepages (run scripts/setup.sh)"
}

# bench_work DIR: DIR emptied (made), RECORDS its empty records file, PIDS empty.
bench_work() {
    rm -rf "$1"
    mkdir -p "$1"
    RECORDS=$1/records.jsonl
    : >"$RECORDS"
    PIDS=()
}

# The commit the figures are of: RVS_BENCH_COMMIT when set (a tree without .git), else HEAD's
# short hash, marked when the tree has uncommitted changes (the results files the benchmarks
# write are no change to the code measured).
bench_commit() {
    local c
    if [ -n "${RVS_BENCH_COMMIT:-}" ]; then
        printf '%s\n' "$RVS_BENCH_COMMIT"
        return
    fi
    c=$(git -C "$RVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$RVS_ROOT" status --porcelain -- . ':!benches/RESULTS.md' ':!benches/bench.png' 2>/dev/null)" ]; then
        c="$c (with uncommitted changes)"
    fi
    printf '%s\n' "$c"
}

dpdk_version() {
    pkg-config --modversion libdpdk 2>/dev/null || echo unknown
}

# Counts like 10M -> 10000000 (suffixes K, M).
count() {
    case $1 in
    *[kK]) echo $((${1%?} * 1000)) ;;
    *[mM]) echo $((${1%?} * 1000000)) ;;
    *) echo "$1" ;;
    esac
}

# The words of a command, quoted where the shell needs it: for the commands a section lists.
quote() {
    local out='' a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+="$a "; else out+="'$a' "; fi
    done
    printf '%s' "${out% }"
}

# SIGTERM to $1, up to $2 seconds (default 5), then SIGKILL; reaps it when it is our child and
# drops it from PIDS. Sets STOP_RC.
stop_pid() {
    local pid=$1 secs=${2:-5} i keep=() p
    STOP_RC=0
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            STOP_RC=137
        fi
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
    for p in "${PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# Percent of all CPUs busy over one second (nothing of ours runs while this is measured).
busy_pct() {
    local a b total=0 idle i
    read -r -a a < <(head -n1 /proc/stat)
    sleep 1
    read -r -a b < <(head -n1 /proc/stat)
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    [ "$total" -gt 0 ] || total=1
    echo $(((total - idle) * 100 / total))
}

# Two busy-polling processes own both cores during a point: anything else running (a build)
# steals time slices from them and wrecks the figures. Waits up to $1 seconds for quiet; BUSY is
# what was left (the reports flag points measured on a busy machine).
wait_quiet() {
    local deadline=$((SECONDS + $1)) warned=
    while :; do
        BUSY=$(busy_pct)
        [ "$BUSY" -le 15 ] && return 0
        ((SECONDS < deadline)) || break
        [ -n "$warned" ] || log "other work is using ${BUSY}% of the CPUs: waiting for it to stop"
        warned=1
        sleep 1
    done
    warn "measuring on a busy machine (${BUSY}% of the CPUs used by other work)"
}

# rvsadm -S lines for each of PROTO... (udp, tcp; udp6, tcp6 for IPv6): the benchmark's
# service on the VIP 198.51.100.1 (UDP port 9000, TCP port 80), round robin over the four real
# servers 192.0.2.2-5 that rvs-pktgen plays; IPv6: VIP [2001:db8:100::1], real servers
# [2001:db8:2::2]-[2001:db8:2::5] (rvs-pktgen --family 6).
bench_services() {
    local p flag port s vip rs
    for p in "$@"; do
        case $p in
        udp | udp6) flag=-u port=9000 ;;
        tcp | tcp6) flag=-t port=80 ;;
        *) die "bench_services: unknown protocol $p" ;;
        esac
        vip=198.51.100.1 rs=192.0.2.
        [[ $p == *6 ]] && vip="[2001:db8:100::1]" rs=2001:db8:2::
        echo "-A $flag $vip:$port -s rr"
        for s in 2 3 4 5; do
            if [[ $p == *6 ]]; then
                echo "-a $flag $vip:$port -r [$rs$s]:$port -m -w 1"
            else
                echo "-a $flag $vip:$port -r $rs$s:$port -m -w 1"
            fi
        done
    done
}

# write_rvsd_config FILE SOCKET CAPACITY LCORES SERVICES EXT_VDEV INT_VDEV [EAL_ARG...]: rvsd's
# configuration for a benchmark: a worker on each of LCORES (one, or a comma-separated list),
# port ext on EXT_VDEV (a --vdev=NAME,... EAL argument; VIP 198.51.100.1/24), port int on
# INT_VDEV (DIP 192.0.2.1/24), the services (rvsadm -S lines) and a table of CAPACITY
# connections; EAL_ARGs (another port's --vdev) go after the two vdevs, and the caller appends
# what else it needs ([[ports]], [[neighbours]]). With BENCH_IPV6 set, the ports have their
# IPv6 addresses too (ext 2001:db8:100::1/64, the IPv6 VIP; int 2001:db8:2::1/64): clients
# and real servers are on-link, as over IPv4, so neither family has a gateway.
write_rvsd_config() {
    local file=$1 sock=$2 capacity=$3 lcore=$4 services=$5 ext=$6 int=$7 a more=''
    shift 7
    for a in "$@"; do more+=", \"$a\""; done
    local ext_dev=${ext#--vdev=} int_dev=${int#--vdev=}
    ext_dev=${ext_dev%%,*}
    int_dev=${int_dev%%,*}
    local ext6='' int6=''
    if [ -n "${BENCH_IPV6:-}" ]; then
        ext6='addresses6 = ["2001:db8:100::1/64"]'
        int6='addresses6 = ["2001:db8:2::1/64"]'
    fi
    # Top-level keys first: after a [table] header they would belong to it.
    cat >"$file" <<EOF
# written by $RVS_PROG: rvsd on lcore(s) $lcore, ports on $ext_dev and $int_dev; the real servers
# are played by rvs-pktgen.
services = """
$services
"""

[eal]
args = ["-l", "$lcore", "--in-memory", "--no-pci", "$ext", "$int"$more]

[[ports]]
name = "ext"
device = "$ext_dev"
role = "external"
addresses = ["198.51.100.1/24"]
$ext6

[[ports]]
name = "int"
device = "$int_dev"
role = "internal"
addresses = ["192.0.2.1/24"]
$int6

[workers]
lcores = [$lcore]

[conntrack]
capacity = $capacity

[control]
socket = "$sock"
EOF
}

# bench_memif DIR [RSIZE [LCORE]]: the two memif links of the traffic benchmarks, their sockets
# in DIR: EXT_SOCK, INT_SOCK, rvs-pktgen's EAL arguments PG_EAL (lcore LCORE, default 1, memif
# servers) and the DUT's vdevs DUT_VDEVS (memif clients, which size the rings: 2^RSIZE entries,
# DPDK's default 10 when RSIZE is empty or not given, 14 at most). Fixed, distinct, locally
# administered MACs: pktgen 02:..:01:0x, DUT 02:..:00:0x.
bench_memif() {
    local rsize=${2:+,rsize=$2}
    EXT_SOCK=$1/ext.sock
    INT_SOCK=$1/int.sock
    PG_EAL=(-l "${3:-1}" --in-memory --no-pci
        "--vdev=net_memif0,role=server,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:01:01"
        "--vdev=net_memif1,role=server,socket=$INT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:01:02")
    DUT_VDEVS=("--vdev=net_memif0,role=client,socket=$EXT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:00:01$rsize"
        "--vdev=net_memif1,role=client,socket=$INT_SOCK,socket-abstract=no,id=0,mac=02:00:00:00:00:02$rsize")
}

# bench_cleanup, for `trap bench_cleanup EXIT`: stops every process in PIDS (TERM, then KILL)
# and removes WORK unless RVS_BENCH_WORK named it.
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    [ -n "${RVS_BENCH_WORK:-}" ] || rm -rf "$WORK"
}

# The commit measured, taken when the benchmark starts (before it builds), not when it writes
# its report: an edit made while a long run goes on is no change to the binaries it measured.
RVS_BENCH_COMMIT=${RVS_BENCH_COMMIT:-$(bench_commit)}
