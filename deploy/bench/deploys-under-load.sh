#!/usr/bin/env bash
# Zero-downtime deploys, measured: wrk (Debian) hits an app through the router on loopback,
# first at steady state, then while the app gets config changes, a push and rollbacks.
# Reports requests, non-2xx responses and socket errors, and p50/p99 latency of both runs,
# then the time from `releases:rollback` and from `config:set` until the change is live
# (both commands return once the new release serves; the body is checked after each).
#
#   deploy/bench/deploys-under-load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/bench/lib.sh
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }

bench_start
app="bench-zdt-$RANDOM"
repo="$tmp/repo"
bench_app release-app "$repo" "$app"
(cd "$repo" && git push -q platform main 2>/dev/null)

url="http://127.0.0.1:$http_port/"
host="Host: $app.localhost"
body() { curl -fs -H "$host" "$url"; }
summary() {
    local file=$1
    local requests p50 p99 non2xx errors
    requests=$(awk '/requests in/ {print $1}' "$file")
    p50=$(awk '$1 == "50%" {print $2}' "$file")
    p99=$(awk '$1 == "99%" {print $2}' "$file")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$file")
    errors=$(awk '/Socket errors/ {print $0}' "$file")
    echo "requests ${requests}, non-2xx ${non2xx:-0}, ${errors:-socket errors: none}, p50 ${p50}, p99 ${p99}"
}

wrk -t2 -c8 -d15s --latency -H "$host" "$url" > "$tmp/steady.txt"
echo "steady state (15 s, 8 connections): $(summary "$tmp/steady.txt")"

wrk -t2 -c8 -d60s --latency -H "$host" "$url" > "$tmp/deploys.txt" &
load=$!
sleep 2
config=() rollback=()
for i in 1 2 3; do
    t0=$(now); "$bin" config:set -a "$app" "BODY=run$i" >/dev/null; t1=$(now)
    config+=("$(elapsed "$t0" "$t1")")
    case "$(body)" in "run$i "*) ;; *) echo "config $i not live" >&2; exit 1 ;; esac
done
(cd "$repo" && git commit -q --allow-empty -m "fix: bench push" && git push -q platform main 2>/dev/null)
for target in 1.0.1 1.0.2; do
    t0=$(now); "$bin" releases:rollback -a "$app" "$target" >/dev/null; t1=$(now)
    rollback+=("$(elapsed "$t0" "$t1")")
done
case "$(body)" in "run2 "*) ;; *) echo "rollback not live: $(body)" >&2; exit 1 ;; esac
wait "$load"
echo "during 3 config changes, 1 push, 2 rollbacks (60 s, 8 connections): $(summary "$tmp/deploys.txt")"
echo "config change to live: ${config[*]} s (median $(median "${config[@]}") s)"
echo "rollback to live: ${rollback[*]} s (median $(median "${rollback[@]}") s)"
