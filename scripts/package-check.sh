#!/usr/bin/env bash
# Build the Debian package of rvs (cargo-deb) and check it: the files it holds, its control
# fields, the unpacked rvsd runs (--help, --check of the packaged /etc/rvs/rvs.toml), the man
# pages render, and systemd-analyze verifies the unit against the unpacked binaries.
#
#   scripts/package-check.sh          # needs cargo-deb: cargo install cargo-deb --locked
#
# The release build, the man page and completions (rvsd-docs) come first; the .deb lands in
# target/debian/.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
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
    # Both units together: rvs-healthd.service requires rvsd.service.
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
log "package OK: $deb"
