#!/usr/bin/env bash
# Fuzzes the router's host lookup (`route`), header rewriting (`rewrite`) and whole plain-HTTP
# request path (`serve`) with cargo-fuzz (libFuzzer), splitting SECONDS of fuzzing between
# the three; a crash fails the script and leaves its input in artifacts/.
#
#   crates/slipway-router/fuzz/run.sh 60                       # the short CI run
#   SANITIZER=address TOOLCHAIN=+nightly run.sh 3600           # longer, locally
#
# Needs `cargo install cargo-fuzz`. By default it builds with the machine's stable toolchain
# and no sanitizer (CI machines have one toolchain; panics, timeouts and OOMs are still
# caught); AddressSanitizer needs nightly. The build (a few minutes the first time, in
# fuzz/target) is not counted in SECONDS. The corpus grows in corpus/ across runs, starting
# from the inputs in seeds/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
targets=(route rewrite serve)
per_target=$(( seconds / ${#targets[@]} ))
sanitizer=${SANITIZER:-none}
toolchain=(${TOOLCHAIN:+"$TOOLCHAIN"})
(( per_target > 0 )) || { echo "give at least ${#targets[@]} seconds" >&2; exit 2; }
cargo "${toolchain[@]}" fuzz build --release --sanitizer "$sanitizer"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    [ -d "seeds/$target" ] && cp -n "seeds/$target"/* "corpus/$target/"
    echo "fuzzing $target for ${per_target}s"
    cargo "${toolchain[@]}" fuzz run --release --sanitizer "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)|panicked|ERROR' || true
    if ls "artifacts/$target"/crash-* "artifacts/$target"/timeout-* "artifacts/$target"/oom-* >/dev/null 2>&1; then
        echo "fuzz target $target found a failing input in artifacts/$target" >&2
        exit 1
    fi
done
