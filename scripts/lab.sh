#!/usr/bin/env bash
# The rvs namespace lab: an LVS-NAT setup (client, director, real servers) built from network
# namespaces and veth pairs on one machine, with documentation addresses only.
#
#   scripts/lab.sh up [--kernel]     build the lab (tears down a leftover one first)
#   scripts/lab.sh start             start rvsd in rvs-dir and wait for its control socket
#   scripts/lab.sh stop              stop rvsd (by PID)
#   scripts/lab.sh demo [--kernel]   up + start + the ipvsadm-style walk-through + 4 curls, then down
#   scripts/lab.sh status            what exists now
#   scripts/lab.sh down              remove everything (idempotent; also cleans a killed run)
#   scripts/lab.sh rs-stop N         stop real server N's nginx (SIGTERM to its PID): a dead server
#   scripts/lab.sh rs-start N        start real server N's nginx again
#   scripts/lab.sh ha-up             the two-director HA lab instead (see docs/ha.md and below)
#   scripts/lab.sh ha-start [A|B]    start rvsd and rvs-healthd (VRRP) in rvs-dirA / rvs-dirB
#                                    (both when none is named)
#   scripts/lab.sh ha-stop [A|B]     stop them (SIGTERM, by PID; rvs-healthd first)
#   scripts/lab.sh ha-kill A|B       kill -9 of that director's rvsd (a failover action)
#   scripts/lab.sh ha-links A|B down|up   all of that director's links down (or up again)
#   scripts/lab.sh ha-hold A|B       make that director the VRRP master now (the other one's
#                                    rvs-healthd restarted: priority 0 on its way out)
#   scripts/lab.sh ha-reset          links up, both directors running, A the VRRP master
#
#                 198.51.100.0/24                          192.0.2.0/24
#                 2001:db8:100::/64                        2001:db8:2::/64
#  rvs-cli                  rvs-dir (rvsd)                 rvs-sw             rvs-rs1
#  eth0 198.51.100.10 ---- rvs-dext | rvs-dint ---------- sw-dir  br0  sw-rs1 ---- eth0 192.0.2.2
#  2001:db8:100::10        (no kernel addresses:                  br0  sw-rs2 ---- 2001:db8:2::2
#  gw 198.51.100.1          VIP 198.51.100.1, 2001:db8:100::1,               rvs-rs2: 192.0.2.3,
#                           external port 2001:db8:100::2,                   2001:db8:2::3
#                           DIP 192.0.2.1, 2001:db8:2::1                     gw 192.0.2.1,
#                           belong to rvsd)                                  2001:db8:2::1
#
# IPv6 beside IPv4: the client reaches 2001:db8:100::/64 on link (no IPv6 default route), the
# real servers' IPv6 default route is the DIP 2001:db8:2::1. Addresses are added without DAD
# (nodad, accept_dad 0) so they are usable at once; the client and real servers send no router
# solicitations and take no router advertisements. The director namespace and the switch have
# IPv6 off (rvsd owns the director's addresses; the bridge forwards IPv6 all the same, with
# multicast snooping off so NDP multicast always floods). The HA lab (ha-up) is IPv4 only.
#
# The real servers' L2 segment is a bridge (br0) in a namespace of its own, rvs-sw, so that the
# director namespace holds nothing but the two ports rvsd drives. Each real server runs nginx on
# :80 (body "rsN\n") and a UDP service on :9000 answering every datagram with "rsN\n", on IPv4
# and IPv6.
#
# `--kernel` (or RVS_LAB_DIRECTOR=kernel) makes the Linux kernel the director instead of rvsd:
# VIP/DIP as kernel addresses in rvs-dir, ip_forward=1 and nftables DNAT round-robin
# (numgen inc) for TCP :80 and UDP :9000, replies un-NATed by conntrack; the same for IPv6
# (VIP 2001:db8:100::1, DIP 2001:db8:2::1, forwarding=1, an ip6 nat table). It is the kernel
# baseline of DESIGN.md, and a check of the lab itself that needs no rvsd.
#
# Every setting below can be overridden from the environment.
set -euo pipefail
umask 022
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

RVSD=${RVSD:-}                           # rvsd binary; empty: cargo build --release, target/release/rvsd
RVSADM=${RVSADM:-}                       # rvsadm binary; empty: as above, target/release/rvsadm
RVSCTL=${RVSCTL:-}                       # rvsctl binary (HA lab); empty: beside rvsadm
RVS_HEALTHD=${RVS_HEALTHD:-}             # rvs-healthd binary (HA lab's VRRP); empty: beside rvsadm
RVS_CONFIG=${RVS_CONFIG:-}               # rvsd --config FILE; empty: rvsd --lab-config (embedded)
RVS_EAL_ARGS=${RVS_EAL_ARGS:-}           # rvsd --eal-args, e.g. "--no-huge -m 256"
RVS_SOCKET=${RVS_SOCKET:-/run/rvs/rvs.sock}  # control socket (rvsd --socket, rvsadm's RVS_SOCKET)
RVS_LAB_DIR=${RVS_LAB_DIR:-/run/rvs-lab} # lab state: pid files, nginx configs, logs
RVS_LAB_DIRECTOR=${RVS_LAB_DIRECTOR:-rvsd}   # rvsd | kernel
RVS_LAB_SERVERS=${RVS_LAB_SERVERS:-2}    # real servers rvs-rs1..N at 192.0.2.2..N+1 (1..50)
RVS_LAB_NS=${RVS_LAB_NS:-rvs}            # namespace prefix: PREFIX-cli, PREFIX-dir, ... (a second
                                         # lab beside the default one: another prefix, RVS_LAB_DIR
                                         # and RVS_SOCKET)
RVS_READY_TIMEOUT=${RVS_READY_TIMEOUT:-60}   # seconds to wait for rvsd's socket
NGINX=${NGINX:-nginx}
NGINX_USER=${RVS_LAB_NGINX_USER:-www-data}   # nginx worker user (master runs as root)

case $RVS_LAB_NS in
'' | *[!a-z0-9]*) echo "lab.sh: RVS_LAB_NS must be lower-case letters and digits" >&2; exit 1 ;;
esac
NS_CLI=$RVS_LAB_NS-cli
NS_DIR=$RVS_LAB_NS-dir
NS_SW=$RVS_LAB_NS-sw
CLI_IP=198.51.100.10
VIP=198.51.100.1
DIP=192.0.2.1
EXT_PREFIX=24
INT_PREFIX=24
HTTP_PORT=80
UDP_PORT=9000
CLI_IP6=2001:db8:100::10
VIP6=2001:db8:100::1
DIP6=2001:db8:2::1
EXT_PREFIX6=64
INT_PREFIX6=64
LAB_IPV6=0                               # 1: the client and real servers get IPv6 (cmd_up)
# shellcheck source=scripts/lib/ha-lab.sh
. "$RVS_LIB/ha-lab.sh"

RVSD_PID=
UP_PREV_TRAP=
RS_NS=()
RS_IP=()
RS_IP6=()
RS_NAME=()

init_servers() {
    case $RVS_LAB_SERVERS in
    '' | *[!0-9]*) die "RVS_LAB_SERVERS must be a number" ;;
    esac
    if [ "$RVS_LAB_SERVERS" -lt 1 ] || [ "$RVS_LAB_SERVERS" -gt 50 ]; then
        die "RVS_LAB_SERVERS must be 1..50"
    fi
    local i
    for ((i = 1; i <= RVS_LAB_SERVERS; i++)); do
        RS_NAME+=("rs$i")
        RS_NS+=("$RVS_LAB_NS-rs$i")
        RS_IP+=("192.0.2.$((i + 1))")
        RS_IP6+=("2001:db8:2::$((i + 1))")
    done
}

# ---------------------------------------------------------------------------------------------
# small helpers

ns_exists() { [ -e "/run/netns/$1" ]; }

# Namespaces of the lab that exist now (also real servers beyond RVS_LAB_SERVERS from an
# earlier run with more of them).
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{ print $1 }' |
        grep -E "^$RVS_LAB_NS-(cli|dir|dirA|dirB|sw|rs[0-9]+)\$" || true
}

# Write a /proc/sys/net value inside a namespace; a missing key (no IPv6 in this kernel) is ok.
ns_sysctl() {
    local ns=$1 key=$2 val=$3
    ip netns exec "$ns" sh -c "f=/proc/sys/net/$key; [ ! -e \$f ] || echo $val > \$f"
}


# Track a process we started: a file per process holding "PID NAMESPACE COMM".
track() {
    local name=$1 pid=$2 ns=$3 comm
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')
    mkdir -p "$RVS_LAB_DIR/pids"
    echo "$pid $ns $comm" >"$RVS_LAB_DIR/pids/$name"
}

# Is PID still the process we started (same namespace or same command name)?
is_ours() {
    local pid=$1 ns=$2 comm=$3
    pid_alive "$pid" || return 1
    if ns_exists "$ns" && ip netns identify "$pid" 2>/dev/null | grep -qx "$ns"; then
        return 0
    fi
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# SIGTERM, wait up to $2 seconds (default 5), then SIGKILL.
kill_pid() {
    local pid=$1 grace=${2:-5} i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    warn "process $pid did not exit"
}

stop_tracked() {
    local f pid ns comm
    local only=${1:-}
    [ -d "$RVS_LAB_DIR/pids" ] || return 0
    for f in "$RVS_LAB_DIR"/pids/*; do
        [ -e "$f" ] || continue
        [ -z "$only" ] || [ "$(basename "$f")" = "$only" ] || continue
        read -r pid ns comm <"$f" || true
        if [ -n "${pid:-}" ] && is_ours "$pid" "$ns" "$comm"; then
            kill_pid "$pid"
        fi
        rm -f "$f"
    done
}

# UDP request from inside a namespace: print the first line of the answer (2 s per try, 3 tries).
udp_ask() {
    local ns=$1 addr=$2 port=$3
    # shellcheck disable=SC2016 # expanded by the inner bash
    ip netns exec "$ns" bash -c '
        for try in 1 2 3; do
            exec 3<>"/dev/udp/$1/$2" || exit 1
            printf "ping\n" >&3
            if line=$(timeout 2 head -n1 <&3); then
                printf "%s\n" "$line"
                exit 0
            fi
            exec 3<&-
        done
        exit 1' udp_ask "$addr" "$port"
}

http_get() {
    local ns=$1 url=$2
    ip netns exec "$ns" curl -gsS --max-time 10 "$url"
}

# host:port of an address in a URL: [IPv6]:port, IPv4:port.
url_host() {
    case $1 in *:*) printf '[%s]:%s' "$1" "$2" ;; *) printf '%s:%s' "$1" "$2" ;; esac
}

need_tools() {
    local t missing=()
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run scripts/setup.sh)"
}

# ---------------------------------------------------------------------------------------------
# down

cmd_down() {
    need_root
    local ns pid sock
    stop_tracked
    for ns in $(lab_namespaces); do
        # Anything still running in a lab namespace is ours (a killed run's leftovers).
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill_pid "$pid" 2
        done
        ip netns del "$ns" 2>/dev/null || warn "could not delete namespace $ns"
    done
    if [ -f "$RVS_LAB_DIR/socket" ]; then
        sock=$(cat "$RVS_LAB_DIR/socket")
        if [ -S "$sock" ] && ! socket_listening "$sock"; then
            rm -f "$sock"
        fi
    fi
    if [ -f "$RVS_LAB_DIR/dpdk-runtime-dir" ]; then
        rm -rf "$(cat "$RVS_LAB_DIR/dpdk-runtime-dir")"
    fi
    if [ -f "$RVS_LAB_DIR/socket-dir" ]; then
        rmdir "$(cat "$RVS_LAB_DIR/socket-dir")" 2>/dev/null || true
    fi
    ha_down_files
    rm -rf "$RVS_LAB_DIR"
    local left
    left=$(lab_namespaces | xargs)
    if [ -n "$left" ]; then
        warn "down: namespaces left: $left"
        return 1
    fi
    log "down: no lab namespaces left"
}

socket_listening() {
    ss -Hxl 2>/dev/null | awk -v p="$1" '$5 == p { found = 1 } END { exit !found }'
}

# ---------------------------------------------------------------------------------------------
# up

# veth pair whose ends go straight into their namespaces (nothing touches the host namespace).
veth() {
    local ns_a=$1 if_a=$2 ns_b=$3 if_b=$4
    ip -n "$ns_a" link add "$if_a" type veth peer name "$if_b" netns "$ns_b"
}


offloads_off() {
    local ns=$1 ifname=$2
    ip netns exec "$ns" ethtool -K "$ifname" tx off tso off gso off gro off >/dev/null 2>&1 ||
        die "ethtool -K $ifname (in $ns) failed"
}

nginx_conf() {
    local dir=$1 user=$2 name=$3 mod temp="" load_stream=""
    local v
    v=$("$NGINX" -V 2>&1) || die "$NGINX -V failed: is nginx installed? (scripts/setup.sh)"
    # The UDP service is nginx's stream module; Debian builds it as a dynamic module
    # (package libnginx-mod-stream). Our own -c configuration must load it by path.
    case $v in
    *--with-stream=dynamic*)
        local modules=/usr/lib/nginx/modules
        [[ $v =~ --modules-path=([^ ]+) ]] && modules=${BASH_REMATCH[1]}
        [ -f "$modules/ngx_stream_module.so" ] ||
            die "$modules/ngx_stream_module.so missing: install libnginx-mod-stream (scripts/setup.sh)"
        load_stream="load_module $modules/ngx_stream_module.so;"
        ;;
    *--with-stream\ * | *--with-stream) ;;
    *) die "$NGINX has no stream module (UDP service): install libnginx-mod-stream (scripts/setup.sh)" ;;
    esac
    for mod in proxy fastcgi uwsgi scgi; do
        case $v in
        *--without-http_${mod}_module*) ;;
        *) temp+="    ${mod}_temp_path $dir/tmp/$mod;"$'\n' ;;
        esac
    done
    cat <<EOF
# generated by scripts/lab.sh: one real server of the rvs lab
$load_stream
user $user;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log notice;
events { worker_connections 1024; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/tmp/client_body;
$temp    default_type text/plain;
    keepalive_timeout 30;
    server {
        listen $HTTP_PORT default_server;
        listen [::]:$HTTP_PORT default_server;
        server_name _;
        root $dir/www;
        index index.html;
        # Paced downloads, for long-lived transfers in tests: nginx sends these at 1 MB/s
        # (a client's --limit-rate only paces its reads, and bursts).
        location /slow/ {
            limit_rate 1m;
        }
    }
}
stream {
    # One datagram in, one datagram out: the server's name.
    server {
        listen $UDP_PORT udp;
        listen [::]:$UDP_PORT udp;
        return "$name\n";
    }
}
EOF
}

start_real_server() {
    local idx=$1
    local ns=${RS_NS[idx]} name=${RS_NAME[idx]}
    local dir=$RVS_LAB_DIR/$name user=$NGINX_USER i pid
    id -u "$user" >/dev/null 2>&1 || user=root
    mkdir -p "$dir/www" "$dir/tmp"
    printf '%s\n' "$name" >"$dir/www/index.html"
    nginx_conf "$dir" "$user" "$name" >"$dir/nginx.conf"
    # Output to a file: nginx daemonizes, and must not hold on to our stdout/stderr.
    if ! ip netns exec "$ns" "$NGINX" -t -q -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" \
        </dev/null >>"$dir/nginx.out" 2>&1; then
        cat "$dir/nginx.out" >&2
        die "nginx -t failed for $dir/nginx.conf"
    fi
    if ! ip netns exec "$ns" "$NGINX" -e "$dir/error.log" -p "$dir/" -c "$dir/nginx.conf" \
        </dev/null >>"$dir/nginx.out" 2>&1; then
        cat "$dir/nginx.out" "$dir/error.log" >&2 2>/dev/null || true
        die "nginx failed to start in $ns"
    fi
    pid=$(cat "$dir/nginx.pid")
    track "nginx-$name" "$pid" "$ns"

    for ((i = 0; i < 50; i++)); do
        if [ -n "$(ip netns exec "$ns" ss -Hlun "sport = :$UDP_PORT")" ]; then
            break
        fi
        pid_alive "$pid" || die "nginx died in $ns (see $dir/error.log)"
        sleep 0.1
    done
    [ -n "$(ip netns exec "$ns" ss -Hlun "sport = :$UDP_PORT")" ] || die "UDP service did not start in $ns"
}

setup_kernel_director() {
    local i ifname map="" map6=""
    need_tools nft
    ip -n "$NS_DIR" addr add "$VIP/$EXT_PREFIX" dev rvs-dext
    ip -n "$NS_DIR" addr add "$DIP/$INT_PREFIX" dev rvs-dint
    ns_sysctl "$NS_DIR" ipv4/ip_forward 1
    # IPv6 on the two ports (off for rvsd), without DAD, and forwarding.
    for ifname in rvs-dext rvs-dint; do
        ns_sysctl "$NS_DIR" "ipv6/conf/$ifname/accept_dad" 0
        ns_sysctl "$NS_DIR" "ipv6/conf/$ifname/disable_ipv6" 0
    done
    ns_sysctl "$NS_DIR" ipv6/conf/all/forwarding 1
    ip -n "$NS_DIR" -6 addr add "$VIP6/$EXT_PREFIX6" dev rvs-dext nodad
    ip -n "$NS_DIR" -6 addr add "$DIP6/$INT_PREFIX6" dev rvs-dint nodad
    for ((i = 0; i < ${#RS_IP[@]}; i++)); do
        map+="${map:+, }$i : ${RS_IP[i]}"
        map6+="${map6:+, }$i : ${RS_IP6[i]}"
    done
    ip netns exec "$NS_DIR" nft -f - <<EOF
table ip rvs_lab {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport $HTTP_PORT dnat to numgen inc mod ${#RS_IP[@]} map { $map }
        ip daddr $VIP udp dport $UDP_PORT dnat to numgen inc mod ${#RS_IP[@]} map { $map }
    }
}
table ip6 rvs_lab6 {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip6 daddr $VIP6 tcp dport $HTTP_PORT dnat to numgen inc mod ${#RS_IP6[@]} map { $map6 }
        ip6 daddr $VIP6 udp dport $UDP_PORT dnat to numgen inc mod ${#RS_IP6[@]} map { $map6 }
    }
}
EOF
}

# The start of an `up`: a leftover lab removed, up_failed as the EXIT trap (the one before it
# kept for up_done) and a new, empty $RVS_LAB_DIR.
up_begin() {
    if [ -n "$(lab_namespaces)" ] || [ -d "$RVS_LAB_DIR" ]; then
        log "removing a leftover lab first"
        cmd_down >/dev/null
    fi
    UP_PREV_TRAP=$(trap -p EXIT)
    trap up_failed EXIT
    mkdir -p "$RVS_LAB_DIR"
    chmod 755 "$RVS_LAB_DIR"
}

# The end of a successful `up`: the EXIT trap from before up_begin again.
up_done() {
    if [ -n "$UP_PREV_TRAP" ]; then eval "$UP_PREV_TRAP"; else trap - EXIT; fi
}

# add_namespaces NS...: new namespaces, loopback up, IPv6 off.
add_namespaces() {
    local ns
    for ns in "$@"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ns_sysctl "$ns" ipv6/conf/all/disable_ipv6 1
        ns_sysctl "$ns" ipv6/conf/default/disable_ipv6 1
    done
}

# ipv6_host NS...: IPv6 on again in these namespaces (before their interfaces exist, so these
# take the defaults), as a plain host: no DAD (addresses usable at once), no router
# solicitations, no router advertisements taken (the routes are static).
ipv6_host() {
    local ns conf
    for ns in "$@"; do
        for conf in all default; do
            ns_sysctl "$ns" "ipv6/conf/$conf/accept_dad" 0
            ns_sysctl "$ns" "ipv6/conf/$conf/accept_ra" 0
            ns_sysctl "$ns" "ipv6/conf/$conf/router_solicitations" 0
            ns_sysctl "$ns" "ipv6/conf/$conf/disable_ipv6" 0
        done
    done
}

# The client's and the real servers' addresses and default routes (via the VIP and the DIP),
# and the real servers' nginx.
up_hosts() {
    local i
    ip -n "$NS_CLI" addr add "$CLI_IP/$EXT_PREFIX" dev eth0
    ip -n "$NS_CLI" link set eth0 up
    ip -n "$NS_CLI" route add default via "$VIP"
    if [ "$LAB_IPV6" = 1 ]; then
        # 2001:db8:100::/64 on link: the VIP and the director's port address are neighbours.
        ip -n "$NS_CLI" -6 addr add "$CLI_IP6/$EXT_PREFIX6" dev eth0 nodad
    fi

    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        ip -n "${RS_NS[i]}" addr add "${RS_IP[i]}/$INT_PREFIX" dev eth0
        ip -n "${RS_NS[i]}" link set eth0 up
        ip -n "${RS_NS[i]}" route add default via "$DIP"
        if [ "$LAB_IPV6" = 1 ]; then
            ip -n "${RS_NS[i]}" -6 addr add "${RS_IP6[i]}/$INT_PREFIX6" dev eth0 nodad
            ip -n "${RS_NS[i]}" -6 route add default via "$DIP6" dev eth0
        fi
        start_real_server "$i"
    done
}

# Self-check of an `up`: every real server answers HTTP and UDP across its segment (asked
# from rvs-rs1), over IPv6 too when the lab has it.
check_real_servers() {
    local got i addr addrs
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        addrs=("${RS_IP[i]}")
        [ "$LAB_IPV6" != 1 ] || addrs+=("${RS_IP6[i]}")
        for addr in "${addrs[@]}"; do
            got=$(http_get "${RS_NS[0]}" "http://$(url_host "$addr" "$HTTP_PORT")/") ||
                die "self-check: no HTTP answer from $addr"
            [ "$got" = "${RS_NAME[i]}" ] || die "self-check: HTTP $addr answered '$got'"
            got=$(udp_ask "${RS_NS[0]}" "$addr" "$UDP_PORT") ||
                die "self-check: no UDP answer from $addr:$UDP_PORT"
            [ "$got" = "${RS_NAME[i]}" ] || die "self-check: UDP $addr answered '$got'"
        done
    done
}

up_failed() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ]; then
        warn "lab up failed (exit $rc); tearing down"
        cmd_down >/dev/null 2>&1 || true
    fi
    exit "$rc"
}

cmd_up() {
    need_root
    local tools=(ip ethtool ss curl timeout "$NGINX")
    [ "$RVS_LAB_DIRECTOR" = kernel ] && tools+=(nft)
    case $RVS_LAB_DIRECTOR in rvsd | kernel) ;; *) die "RVS_LAB_DIRECTOR must be rvsd or kernel" ;; esac
    need_tools "${tools[@]}"
    up_begin
    echo "$RVS_LAB_DIRECTOR" >"$RVS_LAB_DIR/director"

    local i
    LAB_IPV6=1
    add_namespaces "$NS_CLI" "$NS_DIR" "$NS_SW" "${RS_NS[@]}"
    ipv6_host "$NS_CLI" "${RS_NS[@]}"

    # client <-> director external port
    veth "$NS_CLI" eth0 "$NS_DIR" rvs-dext
    # director internal port <-> switch
    veth "$NS_DIR" rvs-dint "$NS_SW" sw-dir
    # No multicast snooping: IPv6 neighbour solicitations (multicast) always flood.
    ip -n "$NS_SW" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$NS_SW" link set sw-dir master br0
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        veth "${RS_NS[i]}" eth0 "$NS_SW" "sw-${RS_NAME[i]}"
        ip -n "$NS_SW" link set "sw-${RS_NAME[i]}" master br0
    done

    # Offloads off on every veth end: with tx checksum offload the kernel hands out packets
    # with partial checksums, which a raw-socket reader (af_packet, af_xdp) passes on as they are.
    offloads_off "$NS_CLI" eth0
    offloads_off "$NS_DIR" rvs-dext
    offloads_off "$NS_DIR" rvs-dint
    offloads_off "$NS_SW" sw-dir
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        offloads_off "${RS_NS[i]}" eth0
        offloads_off "$NS_SW" "sw-${RS_NAME[i]}"
    done

    # director: two bare ports, no kernel addresses, no IPv6, no forwarding (rvsd owns them)
    ns_sysctl "$NS_DIR" ipv6/conf/rvs-dext/disable_ipv6 1
    ns_sysctl "$NS_DIR" ipv6/conf/rvs-dint/disable_ipv6 1
    ns_sysctl "$NS_DIR" ipv4/ip_forward 0
    ip -n "$NS_DIR" link set rvs-dext up
    ip -n "$NS_DIR" link set rvs-dint up

    ip -n "$NS_SW" link set br0 up
    for ifname in sw-dir "${RS_NAME[@]/#/sw-}"; do
        ip -n "$NS_SW" link set "$ifname" up
    done

    up_hosts

    if [ "$RVS_LAB_DIRECTOR" = kernel ]; then
        setup_kernel_director
    fi

    # The kernel turns a veth's queue on a moment after its carrier (link watch, up to 1 s);
    # until then it drops what is sent. Wait for every end to be operationally up.
    wait_link_up "$NS_CLI" eth0
    wait_link_up "$NS_DIR" rvs-dext
    wait_link_up "$NS_DIR" rvs-dint
    wait_link_up "$NS_SW" sw-dir
    for ((i = 0; i < ${#RS_NS[@]}; i++)); do
        wait_link_up "${RS_NS[i]}" eth0
        wait_link_up "$NS_SW" "sw-${RS_NAME[i]}"
    done

    check_real_servers
    up_done
    log "up: director=$RVS_LAB_DIRECTOR client $CLI_IP $CLI_IP6 in $NS_CLI," \
        "VIP $VIP $VIP6 / DIP $DIP $DIP6 in $NS_DIR," \
        "real servers ${RS_IP[*]} ${RS_IP6[*]} (nginx :$HTTP_PORT, udp :$UDP_PORT)"
}

# ---------------------------------------------------------------------------------------------
# rvsd

resolve_binaries() {
    if [ -z "$RVSD" ] || [ -z "$RVSADM" ]; then
        log "building release binaries (cargo build --release -p rvsd -p control -p health)"
        run_cargo build --release -p rvsd -p control -p health
        fix_target_owner
        RVSD=${RVSD:-$RVS_ROOT/target/release/rvsd}
        RVSADM=${RVSADM:-$RVS_ROOT/target/release/rvsadm}
    fi
    [ -x "$RVSD" ] || die "rvsd not found at $RVSD"
    [ -x "$RVSADM" ] || die "rvsadm not found at $RVSADM"
    RVSCTL=${RVSCTL:-$(dirname "$RVSADM")/rvsctl}
    RVS_HEALTHD=${RVS_HEALTHD:-$(dirname "$RVSADM")/rvs-healthd}
}

# wait_socket SOCK PID LOG WHO: waits up to RVS_READY_TIMEOUT for WHO (process PID, writing
# LOG) to create its control socket SOCK; dies with the log's tail if it exits first or never does.
wait_socket() {
    local sock=$1 pid=$2 logf=$3 who=$4 i
    for ((i = 0; i < RVS_READY_TIMEOUT * 10; i++)); do
        [ -S "$sock" ] && break
        if ! pid_alive "$pid"; then
            tail -n 30 "$logf" >&2 || true
            die "$who exited before creating $sock"
        fi
        sleep 0.1
    done
    if [ ! -S "$sock" ]; then
        tail -n 30 "$logf" >&2 || true
        die "$who did not create $sock within ${RVS_READY_TIMEOUT}s"
    fi
}

cmd_start() {
    need_root
    ns_exists "$NS_DIR" || die "no lab: run '$0 up' first"
    [ "$(cat "$RVS_LAB_DIR/director" 2>/dev/null)" = rvsd ] || die "the lab was built with --kernel"
    [ -n "$RVSD" ] || resolve_binaries
    [ -x "$RVSD" ] || die "rvsd not found at $RVSD"
    if [ -e "$RVS_SOCKET" ]; then
        socket_listening "$RVS_SOCKET" && die "$RVS_SOCKET is in use by a running rvsd (set RVS_SOCKET)"
        rm -f "$RVS_SOCKET"
    fi
    if [ ! -d "$(dirname "$RVS_SOCKET")" ]; then
        mkdir -p "$(dirname "$RVS_SOCKET")"
        dirname "$RVS_SOCKET" >"$RVS_LAB_DIR/socket-dir"
    fi
    echo "$RVS_SOCKET" >"$RVS_LAB_DIR/socket"
    local args=() pid config=$RVS_CONFIG eal_args=$RVS_EAL_ARGS
    if [ -z "$config" ]; then
        # The embedded config's --file-prefix=rvs made this lab's own (EAL takes the last
        # --file-prefix), so that labs side by side never share EAL's files.
        eal_args="--file-prefix=$RVS_LAB_NS-lab${eal_args:+ $eal_args}"
        echo "/var/run/dpdk/$RVS_LAB_NS-lab" >"$RVS_LAB_DIR/dpdk-runtime-dir"
    fi
    if [ -n "$config" ]; then args+=(--config "$config"); else args+=(--lab-config); fi
    [ -z "$eal_args" ] || args+=("--eal-args=$eal_args")
    args+=(--socket "$RVS_SOCKET")
    log "starting: ip netns exec $NS_DIR $RVSD ${args[*]} (log: $RVS_LAB_DIR/rvsd.log)"
    ip netns exec "$NS_DIR" "$RVSD" "${args[@]}" </dev/null >>"$RVS_LAB_DIR/rvsd.log" 2>&1 &
    pid=$!
    RVSD_PID=$pid
    track rvsd "$pid" "$NS_DIR"
    wait_socket "$RVS_SOCKET" "$pid" "$RVS_LAB_DIR/rvsd.log" rvsd
    log "rvsd running, pid $pid, socket $RVS_SOCKET"
}

cmd_stop() {
    need_root
    stop_tracked rvsd
    if [ -f "$RVS_LAB_DIR/socket" ]; then
        local sock
        sock=$(cat "$RVS_LAB_DIR/socket")
        if [ -S "$sock" ] && ! socket_listening "$sock"; then
            rm -f "$sock"
        fi
    fi
}

# ---------------------------------------------------------------------------------------------
# demo

demo_cleanup() {
    local rc=$?
    trap - EXIT
    echo
    if [ "$rc" -ne 0 ] && [ -f "$RVS_LAB_DIR/rvsd.log" ]; then
        echo "--- rvsd log (last 30 lines) ---"
        tail -n 30 "$RVS_LAB_DIR/rvsd.log" || true
    fi
    cmd_down || true
    exit "$rc"
}

show() {
    printf '$ %s\n' "$*"
    "$@"
}

adm() {
    printf '$ rvsadm %s\n' "$*"
    RVS_SOCKET=$RVS_SOCKET "$RVSADM" "$@"
}

cmd_demo() {
    need_root
    [ "$RVS_LAB_DIRECTOR" = kernel ] || resolve_binaries
    trap demo_cleanup EXIT
    cmd_up
    echo
    local expect=() got=() i answer
    for i in 0 1 2 3; do
        expect+=("${RS_NAME[i % ${#RS_NAME[@]}]}")
    done
    if [ "$RVS_LAB_DIRECTOR" = rvsd ]; then
        cmd_start
        echo
        echo "# the LVS-NAT walk-through, with rvsadm instead of ipvsadm (RVS_SOCKET=$RVS_SOCKET)"
        adm -C
        adm -A -t "$VIP:$HTTP_PORT" -s rr
        for ((i = 0; i < ${#RS_IP[@]}; i++)); do
            adm -a -t "$VIP:$HTTP_PORT" -r "${RS_IP[i]}:$HTTP_PORT" -m
        done
        # The same service on the IPv6 VIP, IPv6 real servers behind it.
        adm -A -t "[$VIP6]:$HTTP_PORT" -s rr
        for ((i = 0; i < ${#RS_IP6[@]}; i++)); do
            adm -a -t "[$VIP6]:$HTTP_PORT" -r "[${RS_IP6[i]}]:$HTTP_PORT" -m
        done
    else
        echo "# kernel director: nftables DNAT round-robin in $NS_DIR"
        ip netns exec "$NS_DIR" nft list table ip rvs_lab
        ip netns exec "$NS_DIR" nft list table ip6 rvs_lab6
    fi
    echo
    for i in 1 2 3 4; do
        printf '$ ip netns exec %s curl -s http://%s/\n' "$NS_CLI" "$VIP"
        answer=$(ip netns exec "$NS_CLI" curl -s --max-time 10 "http://$VIP/") || answer="(no answer)"
        printf '%s\n' "$answer"
        got+=("$answer")
    done
    for i in 1 2 3 4; do
        printf "\$ ip netns exec %s curl -gs 'http://[%s]/'\n" "$NS_CLI" "$VIP6"
        answer=$(ip netns exec "$NS_CLI" curl -gs --max-time 10 "http://[$VIP6]/") ||
            answer="(no answer)"
        printf '%s\n' "$answer"
        got+=("$answer")
    done
    expect+=("${expect[@]}")
    if [ "$RVS_LAB_DIRECTOR" = kernel ]; then
        local http=("${expect[@]}")
        for i in 1 2 3 4; do
            printf '$ udp ping %s:%s from %s\n' "$VIP" "$UDP_PORT" "$NS_CLI"
            answer=$(udp_ask "$NS_CLI" "$VIP" "$UDP_PORT") || answer="(no answer)"
            printf '%s\n' "$answer"
            got+=("$answer")
        done
        for i in 1 2 3 4; do
            printf '$ udp ping [%s]:%s from %s\n' "$VIP6" "$UDP_PORT" "$NS_CLI"
            answer=$(udp_ask "$NS_CLI" "$VIP6" "$UDP_PORT") || answer="(no answer)"
            printf '%s\n' "$answer"
            got+=("$answer")
        done
        expect+=("${http[@]}")
    else
        echo
        adm -L -n
    fi
    if [ -n "$RVSD_PID" ]; then
        echo
        cmd_stop
        local st=0
        wait "$RVSD_PID" || st=$?
        RVSD_PID=
        if [ "$st" -eq 0 ]; then
            echo "rvsd stopped cleanly (SIGTERM)"
        else
            echo "rvsd exited with status $st after SIGTERM"
        fi
    fi
    echo
    if [ "${got[*]}" = "${expect[*]}" ]; then
        echo "demo OK: answers ${got[*]}"
    else
        echo "demo FAILED: expected '${expect[*]}', got '${got[*]}'"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# rs-stop / rs-start: one real server's nginx, for health checks to notice

rs_index() {
    local n=${1:-}
    case $n in
    '' | *[!0-9]*) die "give the real server's number, 1..$RVS_LAB_SERVERS" ;;
    esac
    if [ "$n" -lt 1 ] || [ "$n" -gt "$RVS_LAB_SERVERS" ]; then
        die "no real server $n (1..$RVS_LAB_SERVERS)"
    fi
    echo $((n - 1))
}

cmd_rs_stop() {
    need_root
    local idx
    idx=$(rs_index "${1:-}")
    local name=${RS_NAME[idx]}
    [ -f "$RVS_LAB_DIR/pids/nginx-$name" ] || die "nginx of $name is not running (no pid file)"
    # SIGTERM to the master is nginx's fast shutdown: workers exit, the listeners close, so
    # connections are refused from then on; stop_tracked waits for the PID to go.
    stop_tracked "nginx-$name"
    [ -z "$(ip netns exec "${RS_NS[idx]}" ss -Hltn "sport = :$HTTP_PORT")" ] ||
        die "$name still listens on :$HTTP_PORT"
    log "$name: nginx stopped"
}

cmd_rs_start() {
    need_root
    local idx
    idx=$(rs_index "${1:-}")
    local name=${RS_NAME[idx]} i
    ns_exists "${RS_NS[idx]}" || die "no lab: run '$0 up' first"
    [ ! -f "$RVS_LAB_DIR/pids/nginx-$name" ] || die "nginx of $name is running already"
    start_real_server "$idx"
    for ((i = 0; i < 50; i++)); do
        [ -z "$(ip netns exec "${RS_NS[idx]}" ss -Hltn "sport = :$HTTP_PORT")" ] || break
        sleep 0.1
    done
    [ -n "$(ip netns exec "${RS_NS[idx]}" ss -Hltn "sport = :$HTTP_PORT")" ] ||
        die "$name: nginx does not listen on :$HTTP_PORT"
    log "$name: nginx started, pid $(cat "$RVS_LAB_DIR/$name/nginx.pid")"
}

# ---------------------------------------------------------------------------------------------
# status

cmd_status() {
    local ns f pid comm state
    if [ -z "$(lab_namespaces)" ]; then
        echo "no lab namespaces"
    fi
    for ns in $(lab_namespaces); do
        echo "== $ns"
        ip -n "$ns" -br addr 2>/dev/null | sed 's/^/  /'
    done
    if [ -f "$RVS_LAB_DIR/topology" ]; then
        echo "topology: $(cat "$RVS_LAB_DIR/topology"), VIP and DIP with director $(ha_master)"
    elif [ -f "$RVS_LAB_DIR/director" ]; then
        echo "director: $(cat "$RVS_LAB_DIR/director")"
    fi
    if [ -d "$RVS_LAB_DIR/pids" ]; then
        echo "processes:"
        for f in "$RVS_LAB_DIR"/pids/*; do
            [ -e "$f" ] || continue
            read -r pid ns comm <"$f" || true
            if pid_alive "$pid"; then state=running; else state=gone; fi
            printf '  %-12s pid %-7s %-8s %s\n' "$(basename "$f")" "$pid" "$ns" "$state"
        done
    fi
    if [ -f "$RVS_LAB_DIR/socket" ]; then
        echo "rvsd socket: $(cat "$RVS_LAB_DIR/socket")"
    fi
}

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-} arg='' arg2=''
    [ $# -eq 0 ] || shift
    while [ $# -gt 0 ]; do
        case $1 in
        --kernel) RVS_LAB_DIRECTOR=kernel ;;
        -h | --help) usage; exit 0 ;;
        [0-9]* | A | B) arg=$1 ;;
        up | down) arg2=$1 ;;
        *) die "unknown option: $1" ;;
        esac
        shift
    done
    init_servers
    trap 'exit 130' INT
    trap 'exit 143' TERM
    case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    demo) cmd_demo ;;
    status) cmd_status ;;
    rs-stop) cmd_rs_stop "$arg" ;;
    rs-start) cmd_rs_start "$arg" ;;
    ha-up) cmd_ha_up ;;
    ha-start) cmd_ha_start "$arg" ;;
    ha-stop) cmd_ha_stop "$arg" ;;
    ha-kill) cmd_ha_kill "$arg" ;;
    ha-links) cmd_ha_links "$arg" "$arg2" ;;
    ha-hold) cmd_ha_hold "$arg" ;;
    ha-reset) cmd_ha_reset ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
