# shellcheck shell=bash
# Helpers shared by the rvs scripts (sourced, not run).
#
# RVS_ROOT      the repository root
# RVS_LIB       scripts/lib: these helpers and the Python modules the scripts run
# log/warn/die  messages on stderr, prefixed with the script's name
# need_root     exit unless running as root
# need_tools    exit unless every command named is on PATH
# cpu_model     the CPU's model name, for reports
# find_cargo    put cargo on PATH (it is preinstalled under ~/.cargo/bin; nothing is downloaded)
# run_cargo     run cargo as the checkout's owner when started through sudo by that user, so
#               target/ does not fill up with root-owned files (CI and PKG_CONFIG_LIBDIR/_PATH
#               carried over); as the caller otherwise
# root_cargo    run cargo as root (with the owner's toolchain when started through sudo)
# fix_target_owner  give root-owned files under target/ back to the checkout's owner
# pid_alive     whether a PID is a live process (not a zombie)
# wait_link_up  wait until an interface in a namespace is operationally up
# usage_header  print the calling script's header comment (its usage), for -h / --help

RVS_ROOT=${RVS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck disable=SC2034 # for the scripts that source this file
RVS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RVS_PROG=${RVS_PROG:-$(basename "$0")}

# Root's tools (ip, ethtool, nginx) live in the sbin folders, which a plain PATH may lack.
for _d in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in *":$_d:"*) ;; *) PATH="$PATH:$_d" ;; esac
done
unset _d
export PATH

log() { printf '%s: %s\n' "$RVS_PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$RVS_PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$RVS_PROG" "$*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"
}

need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "missing $t (run scripts/setup.sh)"
    done
}

cpu_model() {
    awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo
}

# The user who started us through sudo and owns the checkout, if any (else empty).
builder_user() {
    local u=${SUDO_USER:-}
    [ -n "$u" ] && [ "$u" != root ] && [ "$(id -u)" -eq 0 ] || return 0
    [ "$(stat -c %U "$RVS_ROOT")" = "$u" ] || return 0
    local home
    home=$(getent passwd "$u" | cut -d: -f6)
    [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ] || return 0
    printf '%s\n' "$u"
}

find_cargo() {
    local d u home
    if ! command -v cargo >/dev/null 2>&1; then
        for d in "${CARGO_HOME:-${HOME:-/root}/.cargo}/bin" "${HOME:-/root}/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
            if [ -x "$d/cargo" ]; then
                PATH="$d:$PATH"
                break
            fi
        done
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        u=$(builder_user)
        if [ -n "$u" ]; then
            home=$(getent passwd "$u" | cut -d: -f6)
            PATH="$home/.cargo/bin:$PATH"
            export RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup} CARGO_HOME=${CARGO_HOME:-$home/.cargo}
        fi
    fi
    export PATH
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found (looked on PATH and in ~/.cargo/bin); install the Rust toolchain first"
}

run_cargo() {
    local u home v keep=()
    u=$(builder_user)
    if [ -n "$u" ]; then
        home=$(getent passwd "$u" | cut -d: -f6)
        # sudo starts from a clean environment: carry over what the build must see.
        for v in CI PKG_CONFIG_LIBDIR PKG_CONFIG_PATH; do
            [ -z "${!v+set}" ] || keep+=("$v=${!v}")
        done
        (cd "$RVS_ROOT" && sudo -u "$u" -H env "PATH=$home/.cargo/bin:/usr/local/bin:/usr/bin:/bin" \
            "${keep[@]}" cargo "$@")
    else
        find_cargo
        (cd "$RVS_ROOT" && cargo "$@")
    fi
}

# Run cargo as root even when started through sudo (the lab tests need root), with the
# checkout owner's toolchain in that case; build first with run_cargo so this only runs.
root_cargo() {
    local u home
    u=$(builder_user)
    if [ -n "$u" ]; then
        home=$(getent passwd "$u" | cut -d: -f6)
        (cd "$RVS_ROOT" && env "PATH=$home/.cargo/bin:$PATH" "RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}" \
            "CARGO_HOME=${CARGO_HOME:-$home/.cargo}" cargo "$@")
    else
        find_cargo
        (cd "$RVS_ROOT" && cargo "$@")
    fi
}

fix_target_owner() {
    local owner
    owner=$(stat -c %u:%g "$RVS_ROOT")
    [ "$owner" != 0:0 ] && [ -d "$RVS_ROOT/target" ] || return 0
    find "$RVS_ROOT/target" -user 0 -exec chown -h "$owner" {} + 2>/dev/null || true
}

# Without forks: while benchmarks busy-poll both CPUs at -20, a shell gets little CPU time.
pid_alive() {
    local line st
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    st=${line##*) }
    st=${st%% *}
    [ -n "$st" ] && [ "$st" != Z ]
}

# wait_link_up NS IFNAME: the kernel turns a veth's queue on a moment after its carrier (link
# watch, up to 1 s); until then it drops what is sent.
wait_link_up() {
    local ns=$1 ifname=$2 i
    for ((i = 0; i < 50; i++)); do
        case $(ip -n "$ns" -o link show dev "$ifname") in
        *" state UP "*) return 0 ;;
        esac
        sleep 0.1
    done
    die "$ifname in $ns did not come up"
}

# The header comment of the running script, from its second line to `set -euo pipefail`,
# without the comment signs.
usage_header() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}
