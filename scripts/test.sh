#!/usr/bin/env bash
# Run every rvs test: setup (packages, hugepages), rustfmt check, build, clippy, then all tests
# (the namespace lab test rvsd/tests/lab.rs included: it needs root). Exits non-zero when any
# step fails; every step runs, and a summary closes the output.
#
#   sudo scripts/test.sh
#
# RVS_SKIP_SETUP=1 skips scripts/setup.sh (already done); other variables (RVS_SKIP_LAB, ...)
# reach the tests unchanged. The last step is a fuzz smoke run (scripts/fuzz.sh smoke: every
# cargo-fuzz target for RVS_FUZZ_SMOKE_SECONDS, default 30); without cargo-fuzz it is skipped
# with a warning (the fuzz corpus is replayed by the tests either way); RVS_FUZZ_SMOKE_SECONDS=0
# skips it.
set -euo pipefail
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_root
cd "$RVS_ROOT"

if [ "${RVS_SKIP_SETUP:-}" != 1 ]; then
    "$RVS_ROOT/scripts/setup.sh"
fi
trap fix_target_owner EXIT

failed=()
step() {
    local name=$1
    shift
    log "==> $name"
    local start=$SECONDS
    if "$@"; then
        log "<== $name: ok ($((SECONDS - start)) s)"
    else
        log "<== $name: FAILED ($((SECONDS - start)) s)"
        failed+=("$name")
    fi
}

run_tests() {
    # The tests run as root (the lab needs network namespaces). Started through sudo by the
    # checkout's owner, the owner builds them first, so that root only runs them.
    if [ -n "$(builder_user)" ]; then
        run_cargo test --workspace --no-run || return 1
    fi
    root_cargo test --workspace --no-fail-fast
}

step "cargo fmt --all -- --check" run_cargo fmt --all -- --check
step "cargo build --workspace" run_cargo build --workspace
step "cargo clippy --workspace --all-targets -- -D warnings" \
    run_cargo clippy --workspace --all-targets -- -D warnings
step "cargo test --workspace --no-fail-fast" run_tests

# The loom model check of the connection table (dataplane/src/conntrack/loom_model.rs): about a
# minute of tests after a release build of its own (target/loom, so the normal cache stays).
# RVS_SKIP_LOOM=1 skips it.
loom_check() {
    if [ "${RVS_SKIP_LOOM:-}" = 1 ]; then
        log "loom model check skipped (RVS_SKIP_LOOM=1)"
        return 0
    fi
    run_cargo test --config 'build.rustflags=["--cfg", "loom"]' -p dataplane --lib --release \
        --target-dir target/loom conntrack::loom
}
step "loom model check (conntrack)" loom_check

fuzz_smoke() {
    local secs=${RVS_FUZZ_SMOKE_SECONDS:-30}
    if [ "$secs" = 0 ]; then
        log "fuzz smoke run skipped (RVS_FUZZ_SMOKE_SECONDS=0)"
        return 0
    fi
    if ! run_cargo fuzz --version >/dev/null 2>&1; then
        warn "cargo-fuzz is not installed: fuzz smoke run skipped (scripts/setup.sh installs it)"
        return 0
    fi
    "$RVS_ROOT/scripts/fuzz.sh" smoke "$secs"
}
step "fuzz smoke run (scripts/fuzz.sh smoke)" fuzz_smoke

if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all steps passed"
