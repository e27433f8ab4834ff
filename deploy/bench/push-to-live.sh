#!/usr/bin/env bash
# Push-to-live for the Flask fixture (tests/fixtures/flask-app), measured end to end with the
# real binary: `git push` returns once the new release answers through the router.
#   cold:   first push of a new app (empty build cache, pip downloads everything)
#   warm:   push of a new commit to the same app (cache restored)
#   config: `slipway config:set` until the new release is live
# With STACK=1 it also times `slipway stack:build` into a throwaway image.
# Prints each run and the medians. Traffic goes only to 127.0.0.1 and the app's containers.
#
#   RUNS=3 deploy/bench/push-to-live.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
. deploy/bench/lib.sh
bench_start

cold=() warm=() config=()
for i in $(seq 1 "$runs"); do
    app="bench-$i-$RANDOM"
    repo="$tmp/repo-$i"
    bench_app flask-app "$repo" "$app"

    t0=$(now); (cd "$repo" && git push -q platform main 2>/dev/null); t1=$(now)
    cold+=("$(elapsed "$t0" "$t1")")
    (cd "$repo" && git commit -q --allow-empty -m "fix: warm push")
    t0=$(now); (cd "$repo" && git push -q platform main 2>/dev/null); t1=$(now)
    warm+=("$(elapsed "$t0" "$t1")")
    t0=$(now); "$bin" config:set -a "$app" "GREETING=run$i" >/dev/null; t1=$(now)
    config+=("$(elapsed "$t0" "$t1")")
    body=$(curl -fs --resolve "$app.localhost:$http_port:127.0.0.1" "http://$app.localhost:$http_port/")
    [ "$body" = "run$i from release 1.0.2 on web.1" ] || { echo "unexpected body: $body" >&2; exit 1; }
    echo "run $i: cold ${cold[-1]} s, warm ${warm[-1]} s, config ${config[-1]} s"
done
echo "median of $runs: cold $(median "${cold[@]}") s, warm $(median "${warm[@]}") s, config $(median "${config[@]}") s"

if [ "${STACK:-0}" = 1 ]; then
    t0=$(now); "$bin" stack:build --image slipway/stack:bench >/dev/null; t1=$(now)
    docker rmi slipway/stack:bench >/dev/null
    echo "stack:build: $(elapsed "$t0" "$t1") s"
fi
