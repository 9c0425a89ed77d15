#!/usr/bin/env bash
# Build the Debian package of rvs (cargo-deb) and check it: the files it holds, its control
# fields, the unpacked rvsd runs (--help, --check of the packaged /etc/rvs/rvs.toml), the man
# pages render, systemd-analyze verifies the unit against the unpacked binaries, and the unit's
# own command lines run as systemd would run them: start, reload, stop (as root).
#
#   scripts/package-check.sh             # needs cargo-deb: cargo install cargo-deb --locked
#   scripts/package-check.sh --unit-run ROOT
#                                        # only the unit's command lines, on a tree already
#                                        # unpacked (dpkg-deb -x) at ROOT
#
# The release build, the man page and completions (rvsd-docs) come first; the .deb lands in
# target/debian/.
#
# The unit run: in a private mount namespace (unshare --mount --propagation private), a temp
# folder is bind-mounted over /etc/rvs, holding an rvs.toml on a net_null vdev (--no-huge, a file
# prefix of its own, the control socket in the temp folder), and ROOT/usr/sbin lies over
# /usr/sbin, so the unit's lines run unchanged. ExecStartPre and ExecStart run with
# NOTIFY_SOCKET at a datagram socket read by python3 until READY=1; the file then gains a real
# server and ExecReload runs with $MAINPID substituted until `rvsadm -Ln` shows it; then the
# unit's KillSignal, a zero exit status and STOPPING=1. Everything started is killed by PID on
# any exit.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# The value of KEY= in the [Service] section of UNIT (the last one wins, as in systemd).
unit_value() {
    awk -F= -v key="$2" '/^\[/ { sec = $0 } sec == "[Service]" && $1 == key { sub(/^[^=]*=/, ""); v = $0 } END { print v }' "$1"
}

# A unit command line as words: systemd's prefixes (-@:+!) dropped, $MAINPID substituted.
# Plain words only: a quote would need systemd's own parser.
unit_command() {
    local line=$1 pid=${2:-}
    line=$(printf '%s' "$line" | sed -E 's/^[-@:+!]+//')
    case $line in *\"* | *\'* | *\\*) die "unit command line with quotes or escapes: $line" ;; esac
    printf '%s\n' "${line//\$MAINPID/$pid}"
}

# The part that runs inside the private mount namespace. Arguments: ROOT WORK; the command lines
# come from WORK/exec.*. Writes rvsd's PID to WORK/mainpid at once, for the caller's cleanup.
unit_run_in_namespace() {
    local root=$1 work=$2 pid status i
    local -a start_pre start reload
    # This machine may have no /etc/rvs to bind over: a read-only overlay gives the namespace one.
    mount -t overlay rvs-unit-etc -o "lowerdir=$work/etc-top:/etc" /etc
    mount --bind "$work/etc-rvs" /etc/rvs
    mount -t overlay rvs-unit-sbin -o "lowerdir=$root/usr/sbin:/usr/sbin" /usr/sbin
    local -a env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
        "NOTIFY_SOCKET=$work/notify.sock")
    read -ra start_pre <"$work/exec.start_pre"
    read -ra start <"$work/exec.start"
    if [ ${#start_pre[@]} -gt 0 ]; then
        "${env[@]}" "${start_pre[@]}" </dev/null >>"$work/journal" 2>&1 ||
            { echo "ExecStartPre failed: ${start_pre[*]}"; return 1; }
    fi
    "${env[@]}" "${start[@]}" </dev/null >>"$work/journal" 2>&1 &
    pid=$!
    echo "$pid" >"$work/mainpid"
    for ((i = 0; i < 300; i++)); do
        grep -qx READY=1 "$work/notify.log" 2>/dev/null && break
        pid_alive "$pid" || { echo "rvsd exited before READY=1"; return 1; }
        sleep 0.1
    done
    grep -qx READY=1 "$work/notify.log" || { echo "no READY=1 within 30 s"; return 1; }
    /usr/sbin/rvsadm --socket "$work/rvs.sock" -Ln | grep -q 192.0.2.2 ||
        { echo "rvsadm -Ln lacks the configured real server"; return 1; }

    # The configuration changes, then the unit's reload line runs.
    cp "$work/rvs.toml.2" /etc/rvs/rvs.toml
    unit_command "$(cat "$work/exec.reload.raw")" "$pid" >"$work/exec.reload"
    read -ra reload <"$work/exec.reload"
    "${env[@]}" "MAINPID=$pid" "${reload[@]}" </dev/null >>"$work/journal" 2>&1 ||
        { echo "ExecReload failed: ${reload[*]}"; return 1; }
    for ((i = 0; i < 100; i++)); do
        /usr/sbin/rvsadm --socket "$work/rvs.sock" -Ln | grep -q 192.0.2.3 && break
        sleep 0.1
    done
    /usr/sbin/rvsadm --socket "$work/rvs.sock" -Ln >"$work/after-reload"
    grep -q 192.0.2.3 "$work/after-reload" ||
        { echo "after ExecReload, rvsadm -Ln lacks the added real server:"; cat "$work/after-reload"; return 1; }

    kill -s "$(cat "$work/kill_signal")" "$pid"
    status=0
    wait "$pid" 2>/dev/null || status=$?
    [ "$status" -eq 0 ] || { echo "rvsd exited with status $status after $(cat "$work/kill_signal")"; return 1; }
}

# unit_run_check ROOT: runs the unit's command lines from the unpacked package at ROOT. A
# subshell, so that its EXIT trap leaves the caller's alone.
unit_run_check() (
    local root=$1 unit=$1/lib/systemd/system/rvsd.service work listener='' i
    [ -f "$unit" ] || die "$unit missing"
    for t in unshare python3 mount; do command -v "$t" >/dev/null || die "missing $t"; done
    work=$(mktemp -d /tmp/rvs-unit-run.XXXXXX)
    # Killed by PID, whatever way this function ends.
    # shellcheck disable=SC2064 # expand the paths now
    trap "unit_run_cleanup '$work'" EXIT
    mkdir -p "$work/etc-top/rvs" "$work/etc-rvs"
    local prefix=rvs-unit-run-$$
    local services='-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m'
    local config
    config=$(printf '[eal]\nargs = ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--file-prefix", "%s", "--vdev=net_null0"]\n' "$prefix"
        printf '[[ports]]\nname = "ext"\ndevice = "net_null0"\nrole = "both"\naddresses = ["198.51.100.1/24"]\n'
        printf '[workers]\nlcores = [0]\nmbufs_per_port = 2047\n[conntrack]\ncapacity = 1024\n'
        printf '[control]\nsocket = "%s"\n' "$work/rvs.sock")
    printf 'services = """\n%b\n"""\n%s\n' "$services" "$config" >"$work/etc-rvs/rvs.toml"
    printf 'services = """\n%b\n-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 2\n"""\n%s\n' \
        "$services" "$config" >"$work/rvs.toml.2"
    echo "$prefix" >"$work/prefix"

    unit_command "$(unit_value "$unit" ExecStartPre)" >"$work/exec.start_pre"
    unit_command "$(unit_value "$unit" ExecStart)" >"$work/exec.start"
    unit_value "$unit" ExecReload >"$work/exec.reload.raw"
    [ -s "$work/exec.start" ] || die "$unit has no ExecStart"
    [ -n "$(cat "$work/exec.reload.raw")" ] || die "$unit has no ExecReload"
    local sig
    sig=$(unit_value "$unit" KillSignal)
    sig=${sig:-SIGTERM}
    echo "${sig#SIG}" >"$work/kill_signal"

    python3 - "$work/notify.sock" "$work/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        states = s.recv(4096).decode().splitlines()
        log.write("".join(f"{st}\n" for st in states))
        if "STOPPING=1" in states:
            break
PY
    listener=$!
    echo "$listener" >"$work/listener"
    for ((i = 0; i < 50; i++)); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
    [ -S "$work/notify.sock" ] || die "the notify listener did not start"

    local out
    export RVS_PROG
    if ! out=$(unshare --mount --propagation private bash -c \
        "set -euo pipefail; $(declare -f pid_alive unit_command unit_run_in_namespace die); unit_run_in_namespace '$root' '$work'" 2>&1); then
        die "the unit's command lines failed: $out
--- journal ---
$(cat "$work/journal" 2>/dev/null)"
    fi
    # STOPPING=1 ends the listener.
    wait "$listener" || true
    grep -qx STOPPING=1 "$work/notify.log" ||
        die "no STOPPING=1 from rvsd after the stop signal; notify log: $(cat "$work/notify.log")"
    log "the unit's ExecStartPre, ExecStart (READY=1), ExecReload (rvsadm -Ln shows the change) and stop (status 0, STOPPING=1) ran"
)

# unit_run_cleanup WORK: kills what unit_run_check started, by PID, and removes its files.
unit_run_cleanup() {
    local work=$1 f pid
    for f in mainpid listener; do
        pid=$(cat "$work/$f" 2>/dev/null) || continue
        pid_alive "$pid" || continue
        kill -KILL "$pid" 2>/dev/null
        # Reaps the listener (this shell's child) without bash's "Killed" notice.
        wait "$pid" 2>/dev/null || true
    done
    [ -s "$work/prefix" ] && rm -rf "/var/run/dpdk/$(cat "$work/prefix")"
    rm -rf "$work"
}

case ${1:-} in
-h | --help) usage_header; exit 0 ;;
--unit-run)
    [ $# -eq 2 ] || die "--unit-run takes the unpacked tree (see --help)"
    need_root
    unit_run_check "$(cd "$2" && pwd)"
    exit 0
    ;;
esac
[ $# -eq 0 ] || die "no arguments expected (see --help)"
cd "$RVS_ROOT"
run_cargo deb --version >/dev/null 2>&1 || die "cargo-deb missing: cargo install cargo-deb --locked"

run_cargo build --release -p rvsd --bin rvsd --bin rvsd-docs -p control --bin rvsadm --bin rvsctl \
    -p health --bin rvs-healthd
target/release/rvsd-docs target/release/docs
# cargo deb prints the path of the package it wrote.
deb=$(run_cargo deb -p rvsd --no-build | tail -n 1)
[ -f "$deb" ] || die "cargo deb wrote no package"
log "checking $deb"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's,^\./,/,' >"$tmp/files"
for f in /usr/sbin/rvsd /usr/sbin/rvsadm /usr/sbin/rvsctl /lib/systemd/system/rvsd.service \
    /etc/rvs/rvs.toml /usr/share/man/man8/rvsd.8 /usr/share/man/man8/rvsadm.8 \
    /usr/share/man/man8/rvsctl.8 /usr/share/bash-completion/completions/rvsd \
    /usr/share/bash-completion/completions/rvsctl /usr/share/doc/rvs/copyright \
    /usr/sbin/rvs-healthd /lib/systemd/system/rvs-healthd.service /usr/share/doc/rvs/keepalived.md; do
    # cargo-deb compresses some man pages.
    grep -qx -e "$f" -e "$f.gz" "$tmp/files" || die "$deb lacks $f"
done
dpkg-deb -f "$deb" Depends | grep -q 'dpdk' || die "$deb does not depend on dpdk"
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/rvs/rvs.toml "$tmp/control/conffiles" || die "/etc/rvs/rvs.toml is not a conffile"

dpkg-deb -x "$deb" "$tmp/root"
"$tmp/root/usr/sbin/rvsd" --help | grep -q -- '--lab-config' || die "the unpacked rvsd --help failed"
RVS_LOG=error "$tmp/root/usr/sbin/rvsd" --check --config "$tmp/root/etc/rvs/rvs.toml" >/dev/null ||
    die "the packaged rvs.toml fails rvsd --check"
"$tmp/root/usr/sbin/rvsctl" --help | grep -q neigh || die "the unpacked rvsctl --help failed"
"$tmp/root/usr/sbin/rvs-healthd" --help | grep -q -- '--config-test' || die "the unpacked rvs-healthd --help failed"
for page in rvsd rvsadm rvsctl; do
    man -l "$tmp/root/usr/share/man/man8/$page".8* >/dev/null 2>&1 || die "man page $page.8 does not render"
done
if command -v systemd-analyze >/dev/null; then
    # Against this machine's units, with the unpacked binaries in place of /usr/sbin/.
    # Both units together: rvs-healthd.service is bound to rvsd.service.
    for unit in rvsd rvs-healthd; do
        sed "s,/usr/sbin/,$tmp/root/usr/sbin/,g" "$tmp/root/lib/systemd/system/$unit.service" \
            >"$tmp/$unit.service"
    done
    # It reports a bad directive on stderr but still exits 0: any output is a failure.
    if ! out=$(systemd-analyze verify "$tmp/rvsd.service" "$tmp/rvs-healthd.service" 2>&1) ||
        [ -n "$out" ]; then
        die "systemd-analyze verify rejects rvsd.service or rvs-healthd.service: $out"
    fi
else
    log "systemd-analyze missing: the unit was not verified"
fi
if [ "$(id -u)" -eq 0 ]; then
    unit_run_check "$tmp/root"
else
    warn "not root: the unit's command lines were not run (they need a private mount namespace)"
fi
log "package OK: $deb"
