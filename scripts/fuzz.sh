#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a bounded time (see docs/fuzzing.md).
#
#   scripts/fuzz.sh            60 s per target (the documented long run)
#   scripts/fuzz.sh 10         10 s per target (the CI smoke run)
#   scripts/fuzz.sh 60 rpc_body openai_sse    only these targets
#
# Works on stable Rust: the targets are built without a sanitizer
# (`-s none`), which needs no nightly flag; Rust's own checks (bounds,
# overflow, debug assertions) and the harnesses' assertions catch the bugs.
# FUZZ_SANITIZER=address (with a nightly toolchain, e.g.
# `RUSTUP_TOOLCHAIN=nightly`) adds AddressSanitizer for a long run.
#
# Runs grow a scratch corpus in fuzz/scratch/<target> (ignored by git),
# seeded from fuzz/corpus/<target> and fuzz/regressions/<target>; crashers
# land in fuzz/artifacts/<target>. Prints the executions per target and
# exits non-zero if any target found a crash, a timeout or a memory blow-up.
# FUZZ_TARGET_DIR=<dir> builds there instead of fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
case "$secs" in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [seconds-per-target] [target...]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

sanitizer="${FUZZ_SANITIZER:-none}"
# Release mode with the fuzz crate's cheap optimisation (opt-level 1) and
# 16 codegen units: the cold build of the relay's dependency tree is most
# of a smoke run's time.
build_flags=(--sanitizer "$sanitizer" --codegen-units 16)
# FUZZ_TARGET_DIR keeps the instrumented build elsewhere than fuzz/target
# (e.g. a cache that outlives the checkout).
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    build_flags+=(--target-dir "$FUZZ_TARGET_DIR")
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

started=$SECONDS
echo "== building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build "${build_flags[@]}"
echo "== built in $((SECONDS - started)) s"
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="${FUZZ_TARGET_DIR:-fuzz/target}/$host/release"

mkdir -p fuzz/scratch
summary=()
failed=()
for t in "${targets[@]}"; do
    scratch="fuzz/scratch/$t"
    mkdir -p "$scratch"
    dirs=("$scratch")
    for d in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
        if [ -d "$d" ]; then dirs+=("$d"); fi
    done
    log="fuzz/scratch/$t.log"
    echo "== fuzzing $t for $secs s"
    status=ok
    mkdir -p "fuzz/artifacts/$t"
    # The binary cargo fuzz built, run as `cargo fuzz run` would but without
    # a second cargo invocation. The first directory is the one libFuzzer
    # adds new inputs to.
    if ! "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${dirs[@]}" >"$log" 2>&1; then
        status=FAILED
        failed+=("$t")
        tail -n 40 "$log"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" | tail -n 2 || true
    summary+=("$(printf '%-12s %12s execs %8s exec/s  %s' "$t" "${execs:-?}" "${rate:-?}" "$status")")
done

echo "== fuzz summary ($secs s per target, $((SECONDS - started)) s in all)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/; logs in fuzz/scratch/)" >&2
    echo "keep each crasher in fuzz/regressions/<target>/ once fixed" >&2
    exit 1
fi
