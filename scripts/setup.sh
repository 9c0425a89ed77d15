#!/usr/bin/env bash
# Prepare a Debian 12 machine for building and testing rvs. Idempotent; run as root.
#
#  - installs the Debian packages rvs needs (apt-get update only when one is missing):
#    DPDK (runtime + headers, and dpdk-dev for dpdk-testpmd, the benchmarks' baseline), libclang (bindgen), pkg-config, gcc, libpcap, and for the lab
#    nginx with its stream module (the UDP service), curl, socat (a UDP client
#    for manual checks), ethtool, iproute2 and nftables (nftables only for the lab's
#    `--kernel` director, the kernel baseline), ping (the exception-path lab scenario), wrk
#    and hping3 (scripts/soak.sh, scripts/synflood.sh), g++ (libFuzzer, for the fuzz smoke run), python3 (the benchmark
#    reports, the scripts' unit tests) and shellcheck (scripts/test.sh checks the scripts);
#    prometheus (the metrics lab test's server, and promtool) and chromium (the status page's
#    headless browser); the distro's prometheus service is left stopped;
#  - reserves 2 MB hugepages (RVS_HUGEPAGES, default 1024) and mounts hugetlbfs on
#    /dev/hugepages; fewer pages than asked is reported, not fatal;
#  - checks that the Rust toolchain (cargo) is there; it is never downloaded;
#  - installs cargo-deb (`cargo install cargo-deb --locked`) when it is missing, for the package
#    check of scripts/test.sh (scripts/package-check.sh);
#  - installs cargo-fuzz from crates.io (`cargo install cargo-fuzz --locked`) when it is missing,
#    for the fuzz smoke run of scripts/test.sh; a failure there is a warning here (that step of
#    scripts/test.sh then fails).
#
# Environment: RVS_HUGEPAGES=N (0 skips the reservation), RVS_NO_CARGO_FUZZ=1 (do not install
# cargo-fuzz), RVS_NO_CARGO_DEB=1 (do not install cargo-deb), CI (no prompts either way).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
need_root

HUGEPAGES=${RVS_HUGEPAGES:-1024}

# Package list; an entry "a|b" is satisfied by either package (the first is installed).
PACKAGES=(dpdk dpdk-dev libdpdk-dev libclang-dev pkg-config gcc libc6-dev libpcap-dev
    "nginx-light|nginx|nginx-core|nginx-full|nginx-extras" libnginx-mod-stream curl socat ethtool
    iproute2 nftables iputils-ping
    wrk hping3 g++ python3 shellcheck man-db
    # keepalived: health/'s tests run its --config-test on the example configs; never started here.
    keepalived
    # prometheus: the metrics lab test's server and promtool; chromium: the status page's
    # headless browser. Neither is left running.
    prometheus chromium)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for entry in "${PACKAGES[@]}"; do
    ok=
    IFS='|' read -r -a alts <<<"$entry"
    for p in "${alts[@]}"; do
        if installed "$p"; then
            ok=1
            break
        fi
    done
    [ -n "$ok" ] || missing+=("${alts[0]}")
done

if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting services (nginx would listen on the host's port 80,
    # prometheus on 9090; the lab runs its own of both inside namespaces). Only when no policy
    # is there already.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    rc=0
    {
        apt-get update -q &&
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    } </dev/null || rc=$?
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
    fi
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc) installing: ${missing[*]}"
    # A policy already there may allow starts: stop the distro's prometheus if it runs.
    if [ -d /run/systemd/system ] && systemctl is-active --quiet prometheus 2>/dev/null; then
        systemctl stop prometheus && log "stopped the prometheus service the package started"
    fi
else
    log "packages: all present"
fi

pkg-config --exists libdpdk || die "pkg-config does not find libdpdk after installing libdpdk-dev"
log "DPDK $(pkg-config --modversion libdpdk)"

# Hugepages: 2 MB pages via sysfs.
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ "$HUGEPAGES" -gt 0 ]; then
    if [ -w "$hp" ]; then
        have=$(cat "$hp")
        if [ "$have" -lt "$HUGEPAGES" ]; then
            echo "$HUGEPAGES" >"$hp" 2>/dev/null || warn "could not write $hp"
            have=$(cat "$hp")
        fi
        if [ "$have" -lt "$HUGEPAGES" ]; then
            warn "asked for $HUGEPAGES 2 MB hugepages, the kernel granted $have" \
                "(rvsd can run with --eal-args '--no-huge -m 256', slower)"
        else
            log "hugepages: $have x 2 MB reserved"
        fi
    else
        warn "$hp is not writable: no 2 MB hugepages reserved"
    fi
fi
if ! awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
    mkdir -p /dev/hugepages
    if mount -t hugetlbfs nodev /dev/hugepages; then
        log "mounted hugetlbfs on /dev/hugepages"
    else
        warn "could not mount hugetlbfs on /dev/hugepages"
    fi
fi

find_cargo
log "$(cargo --version)"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    warn "cargo fmt or cargo clippy missing: scripts/test.sh needs both (rustup component add rustfmt clippy)"
fi
if [ "${RVS_NO_CARGO_FUZZ:-}" != 1 ] && ! run_cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    run_cargo install cargo-fuzz --locked ||
        warn "could not install cargo-fuzz: the fuzz smoke run of scripts/test.sh will fail" \
            "(RVS_FUZZ_SMOKE_SECONDS=0 leaves it out)"
fi
if [ "${RVS_NO_CARGO_DEB:-}" != 1 ] && ! run_cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install cargo-deb --locked)"
    run_cargo install cargo-deb --locked ||
        warn "could not install cargo-deb: the package check of scripts/test.sh will fail"
fi
log "setup done"
