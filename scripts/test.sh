#!/usr/bin/env bash
# Run every rvs test: setup (packages, hugepages), the scripts' own checks (bash -n, shellcheck,
# the Python unit tests of scripts/lib), rustfmt check, build, clippy, then all tests (the
# namespace lab test rvsd/tests/lab.rs included: it needs root), the loom model check, the
# build and tests of the crates that must not need DPDK with DPDK out of pkg-config's reach,
# and a fuzz smoke run. Every step runs; a step that cannot run (a tool missing) fails like a
# step whose checks fail. A summary of the steps closes the output; the exit status is
# non-zero when any step failed.
#
#   sudo scripts/test.sh
#
# Switches (each skip is named in the summary):
#   RVS_SKIP_SETUP=1            skip scripts/setup.sh (already done)
#   RVS_SKIP_RUST=1             skip every cargo step: only the scripts' checks run (then root
#                               is not needed, with RVS_SKIP_SETUP=1)
#   RVS_SKIP_LOOM=1             skip the loom model check
#   RVS_SKIP_RSS=1              skip the check of replies on the other worker at load
#   RVS_FUZZ_SMOKE_SECONDS=N    seconds per cargo-fuzz target in the fuzz smoke run
#                               (scripts/fuzz.sh smoke; default 30, 0 skips it)
# Other variables (RVS_SKIP_LAB, ...) reach the tests unchanged.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

case ${1:-} in -h | --help) usage_header; exit 0 ;; esac
[ $# -eq 0 ] || die "no arguments expected (see --help)"
if [ "${RVS_SKIP_SETUP:-}" != 1 ] || [ "${RVS_SKIP_RUST:-}" != 1 ]; then
    need_root
fi
cd "$RVS_ROOT"

if [ "${RVS_SKIP_SETUP:-}" != 1 ]; then
    "$RVS_ROOT/scripts/setup.sh"
fi
trap fix_target_owner EXIT

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECONDS=()
SKIPPED=

# A step calls this (and returns 0) when a switch asked to leave it out.
skip() {
    SKIPPED=$1
    log "skipped: $1"
}

step() {
    local name=$1 result
    shift
    log "==> $name"
    local start=$SECONDS
    SKIPPED=
    if "$@"; then
        result=ok
        [ -z "$SKIPPED" ] || result="skipped ($SKIPPED)"
    else
        result=FAILED
    fi
    log "<== $name: $result ($((SECONDS - start)) s)"
    STEP_NAMES+=("$name")
    STEP_RESULTS+=("$result")
    STEP_SECONDS+=("$((SECONDS - start))")
}

# A cargo step: skipped under RVS_SKIP_RUST=1.
cargo_step() {
    local name=$1
    shift
    if [ "${RVS_SKIP_RUST:-}" = 1 ]; then
        step "$name" skip "RVS_SKIP_RUST=1"
    else
        step "$name" "$@"
    fi
}

# need_tool WHAT CMD...: fails (with a message naming the fix) unless CMD runs.
need_tool() {
    local what=$1
    shift
    "$@" >/dev/null 2>&1 && return 0
    log "cannot run this step: $what"
    return 1
}

SHELL_SCRIPTS=(scripts/*.sh scripts/lib/*.sh .ci/run)

check_scripts() {
    local f ok=0
    for f in "${SHELL_SCRIPTS[@]}"; do
        bash -n "$f" || ok=1
    done
    need_tool "shellcheck is not installed (scripts/setup.sh installs it)" shellcheck --version || return 1
    # -x follows the `# shellcheck source=scripts/lib/...` lines, from the repository root.
    shellcheck -x "${SHELL_SCRIPTS[@]}" || ok=1
    return "$ok"
}

python_tests() {
    need_tool "python3 is not installed" python3 --version || return 1
    python3 -m unittest discover -s scripts/tests -t scripts
}

fmt_check() {
    need_tool "rustfmt is not installed (rustup component add rustfmt)" run_cargo fmt --version || return 1
    run_cargo fmt --all -- --check
}

clippy_check() {
    need_tool "clippy is not installed (rustup component add clippy)" run_cargo clippy --version || return 1
    run_cargo clippy --workspace --all-targets -- -D warnings
}

run_tests() {
    # The tests run as root (the lab needs network namespaces). Started through sudo by the
    # checkout's owner, the owner builds them first, so that root only runs them.
    if [ -n "$(builder_user)" ]; then
        run_cargo test --workspace --no-run || return 1
    fi
    root_cargo test --workspace --no-fail-fast
}

# The loom model checks of the connection table (dataplane/src/conntrack/loom_model.rs) and of
# the seqlock slot the small tables share (dataplane/src/seqlock.rs): about a minute of tests
# after a release build of its own (target/loom, so the normal cache stays).
loom_check() {
    if [ "${RVS_SKIP_LOOM:-}" = 1 ]; then
        skip "RVS_SKIP_LOOM=1"
        return 0
    fi
    run_cargo test --config 'build.rustflags=["--cfg", "loom"]' -p dataplane --lib --release \
        --target-dir target/loom -- conntrack::loom seqlock::loom
}

# dataplane, control and testkit, and the benchmarks without their dpdk feature, build and pass
# their tests with pkg-config pointed at an empty folder: anything in that set that depends on
# dpdk-sys fails in dpdk-sys's build script ("DPDK >= 22.11 was not found by pkg-config").
# Checked: `cargo build -p rvsd` under the same environment fails exactly there. A target folder
# of its own (target/nodpdk): the changed PKG_CONFIG_* variables would rerun the pkg-config
# build scripts of the main cache, and the next normal build would rerun them again.
nodpdk_check() {
    local empty rc=0
    empty=$(mktemp -d)
    PKG_CONFIG_LIBDIR=$empty PKG_CONFIG_PATH='' run_cargo test -p dataplane -p control -p testkit \
        --target-dir target/nodpdk || rc=1
    PKG_CONFIG_LIBDIR=$empty PKG_CONFIG_PATH='' run_cargo build -p rvs-benches --no-default-features \
        --target-dir target/nodpdk || rc=1
    # rvs-healthd: its unit tests (its namespace tests drive rvsd, so they run in the main step).
    PKG_CONFIG_LIBDIR=$empty PKG_CONFIG_PATH='' run_cargo test -p health --lib --bins \
        --target-dir target/nodpdk || rc=1
    rmdir "$empty"
    return "$rc"
}

# Replies landing on another worker than their request, at load: rvs-pktgen for a few seconds
# against rvsd on 2 workers over memif (scripts/bench.sh --workers 2: each frame on the queue a
# hash of its own tuple picks, as RSS would after NAT), UDP and TCP with 1K flows; it passes
# when every run has zero reply mismatches, no loss beyond the replies rvsd's full rings
# refused (+0.1 %), and rvsd's per-worker counters show both workers DNATing and SNATing. No
# speed is checked. Under the benchmark lock, as every memif run (a release build of its own).
rss_check() {
    if [ "${RVS_SKIP_RSS:-}" = 1 ]; then
        skip "RVS_SKIP_RSS=1"
        return 0
    fi
    local work=/tmp/rvs-rss-check.$$ rc=0
    flock /run/rvs-bench.lock env RVS_BENCH_KERNEL=0 RVS_BENCH_QUIET_WAIT=0 RVS_BENCH_RETRIES=0 \
        RVS_BENCH_WORK="$work" "$RVS_ROOT/scripts/bench.sh" --workers 2 --no-testpmd --pairs 1 \
        --only '*-1K' --warmup 1 --duration 3 --out "$work/RESULTS.md" --check-rss || rc=1
    rm -rf "$work"
    return "$rc"
}

fuzz_smoke() {
    local secs=${RVS_FUZZ_SMOKE_SECONDS:-30}
    if [ "$secs" = 0 ]; then
        skip "RVS_FUZZ_SMOKE_SECONDS=0"
        return 0
    fi
    need_tool "cargo-fuzz is not installed (scripts/setup.sh installs it; RVS_FUZZ_SMOKE_SECONDS=0 skips this step)" \
        run_cargo fuzz --version || return 1
    "$RVS_ROOT/scripts/fuzz.sh" smoke "$secs"
}

step "scripts: bash -n, shellcheck" check_scripts
step "scripts: Python unit tests (scripts/tests)" python_tests
cargo_step "cargo fmt --all -- --check" fmt_check
cargo_step "cargo build --workspace" run_cargo build --workspace
cargo_step "cargo clippy --workspace --all-targets -- -D warnings" clippy_check
cargo_step "cargo test --workspace --no-fail-fast" run_tests
cargo_step "loom model checks (conntrack, seqlock)" loom_check
cargo_step "replies on the other worker at load (scripts/bench.sh --workers 2 --check-rss)" rss_check
cargo_step "without DPDK: dataplane, control, testkit, health, rvs-benches --no-default-features" nodpdk_check
cargo_step "fuzz smoke run (scripts/fuzz.sh smoke)" fuzz_smoke
cargo_step "Debian package (scripts/package-check.sh)" "$RVS_ROOT/scripts/package-check.sh"

log "summary:"
failed=()
skipped=0
for i in "${!STEP_NAMES[@]}"; do
    printf '%s:   %-78s %5s s  %s\n' "$RVS_PROG" "${STEP_NAMES[i]}" "${STEP_SECONDS[i]}" "${STEP_RESULTS[i]}" >&2
    case ${STEP_RESULTS[i]} in
    FAILED) failed+=("${STEP_NAMES[i]}") ;;
    skipped*) skipped=$((skipped + 1)) ;;
    esac
done
if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')"
    exit 1
fi
if [ "$skipped" -gt 0 ]; then
    log "all steps passed but $skipped skipped on request"
else
    log "all steps passed"
fi
