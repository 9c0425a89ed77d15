#!/usr/bin/env bash
# Fuzz the rvs packet path with cargo-fuzz (libFuzzer + AddressSanitizer). See fuzz/README.md.
#
#   scripts/fuzz.sh smoke [SECONDS]        every target for SECONDS (default 30): the CI smoke run
#   scripts/fuzz.sh run TARGET [SECONDS]   one target (pipeline | packet), default 600 s
#   scripts/fuzz.sh list                   the targets
#
# New inputs go to a scratch corpus (target/fuzz-corpus/TARGET, or RVS_FUZZ_CORPUS), seeded
# from the small corpus kept in the repository (fuzz/corpus/TARGET), which is never written to;
# crashes go to fuzz/artifacts/TARGET. Every crash, once fixed, belongs in fuzz/corpus/TARGET
# (named regress-*), where `cargo test` replays it (dataplane/tests/fuzz_corpus.rs).
#
# cargo-fuzz needs nightly-only compiler flags; with the stable toolchain this script sets
# RUSTC_BOOTSTRAP=1, which makes stable rustc accept them. One job, one process: the machine is
# small. Exits non-zero when a target crashes.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

TARGETS=(pipeline packet sync)

fuzz_cargo() {
    local u home
    u=$(builder_user)
    if [ -n "$u" ]; then
        home=$(getent passwd "$u" | cut -d: -f6)
        (cd "$RVS_ROOT" && sudo -u "$u" -H env "PATH=$home/.cargo/bin:/usr/local/bin:/usr/bin:/bin" \
            RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=detect_odr_violation=0 cargo fuzz "$@")
    else
        find_cargo
        (cd "$RVS_ROOT" && RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=detect_odr_violation=0 cargo fuzz "$@")
    fi
}

run_target() {
    local target=$1 secs=$2
    local scratch=${RVS_FUZZ_CORPUS:-$RVS_ROOT/target/fuzz-corpus}/$target
    mkdir -p "$scratch" "$RVS_ROOT/fuzz/artifacts/$target"
    log "fuzzing $target for ${secs}s (scratch corpus $scratch)"
    fuzz_cargo run -O "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$RVS_ROOT/fuzz/artifacts/$target/"
}

main() {
    local cmd=${1:-} t
    case $cmd in
    smoke)
        local secs=${2:-30} failed=()
        fuzz_cargo --version >/dev/null 2>&1 ||
            die "cargo-fuzz is not installed (scripts/setup.sh installs it)"
        for t in "${TARGETS[@]}"; do
            run_target "$t" "$secs" || failed+=("$t")
        done
        [ ${#failed[@]} -eq 0 ] || die "fuzz targets crashed: ${failed[*]} (see fuzz/artifacts/)"
        log "fuzz smoke: ${TARGETS[*]} ran ${secs}s each without a crash"
        ;;
    run)
        local target=${2:-} secs=${3:-600}
        case " ${TARGETS[*]} " in *" $target "*) ;; *) die "unknown target '$target' (${TARGETS[*]})" ;; esac
        run_target "$target" "$secs"
        ;;
    list) printf '%s\n' "${TARGETS[@]}" ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
}

main "$@"
