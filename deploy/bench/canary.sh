#!/usr/bin/env bash
# What a canary split and a rate limit cost in Slipway's router, in one run: the router (the
# `canary_split` example) in front of one nginx upstream serving a 1 KB file, reached under four
# hosts that differ only in routing: plain.localhost (one backend), pair.localhost (two backends),
# split.localhost (one backend plus a canary backend taking 20%, with per-release counters) and
# limited.localhost (one backend and a rate limit that never refuses, so every request checks a
# bucket). The split is compared with pair (both have two backends, which makes the router keep
# a copy of each request's headers for a retry), the limiter with plain. wrk runs the hosts in
# turn, ROUNDS times, and prints requests/s, p50 and p99 of each run and the median of each
# host. Everything listens on 127.0.0.1 and stops at the end.
#
# With PARTS including `callgrind` (valgrind), each host is then measured in user-space
# instructions per request, which a loaded machine does not blur: the router under callgrind,
# counters zeroed after a 2 s warm-up, wrk -t1 -c4 for CG_DURATION, counters dumped.
#
#   cargo build --release -p slipway-router --example canary_split
#   DURATION=10s CONNECTIONS=32 ROUNDS=3 PARTS="wall callgrind" deploy/bench/canary.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nginx >/dev/null || { echo "install nginx: apt-get install nginx-light" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
rounds=${ROUNDS:-3}
parts=" ${PARTS:-wall callgrind} "
cg_duration=${CG_DURATION:-10s}
router=${ROUTER_BIN:-$PWD/target/release/examples/canary_split}
[ -x "$router" ] || { echo "build it first: cargo build --release -p slipway-router --example canary_split" >&2; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/logs"
head -c 1024 /dev/zero | tr '\0' 'a' > "$tmp/www/small"
chmod -R a+rX "$tmp/www"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream=$(free_port) slipway=$(free_port)

cat > "$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$upstream; root $tmp/www; }
}
CONF
nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
"$router" "127.0.0.1:$slipway" "127.0.0.1:$upstream" &
router_pid=$!
cleanup() {
    kill "$router_pid" "$nginx_pid" 2>/dev/null || true
    wait "$router_pid" "$nginx_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fs -H "Host: plain.localhost" "http://127.0.0.1:$slipway/small" >/dev/null && break
    sleep 0.1
done

# run HOST: prints "requests/s p50 p99" (latencies in ms)
run() {
    local out
    out=$(wrk -t2 -c"$connections" -d"$duration" --latency -H "Host: $1.localhost" "http://127.0.0.1:$slipway/small")
    if grep -q "Non-2xx" <<<"$out"; then echo "$1: non-2xx responses" >&2; exit 1; fi
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }' <<<"$out"
}

if [[ $parts == *" wall "* ]]; then
printf '%-6s %-8s %12s %10s %10s\n' round host "requests/s" "p50 ms" "p99 ms"
: > "$tmp/results"
for round in $(seq 1 "$rounds"); do
    for host in plain pair split limited; do
        read -r rps p50 p99 < <(run "$host")
        printf '%-6s %-8s %12s %10s %10s\n' "$round" "$host" "$rps" "$p50" "$p99"
        echo "$host $rps $p50 $p99" >> "$tmp/results"
    done
done
python3 - "$tmp/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    host, rps, p50, p99 = line.split()
    runs.setdefault(host, []).append((float(rps), float(p50), float(p99)))
median = {h: [statistics.median(col) for col in zip(*r)] for h, r in runs.items()}
for host, (rps, p50, p99) in median.items():
    print(f"median {host:8} {rps:10.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms")
for host, base in (("pair", "plain"), ("split", "pair"), ("limited", "plain")):
    rps, p50, p99 = median[host]
    b = median[base]
    print(f"{host} vs {base}: throughput {100 * (rps / b[0] - 1):+.1f}%, "
          f"p50 {1000 * (p50 - b[1]):+.0f} us, p99 {1000 * (p99 - b[2]):+.0f} us")
PY
fi

if [[ $parts == *" callgrind "* ]]; then
command -v valgrind >/dev/null || { echo "install valgrind: apt-get install valgrind" >&2; exit 1; }
printf '%-8s %12s %16s\n' host requests "instructions/req"
for host in plain pair split limited; do
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$host" "$router" "127.0.0.1:$port" "127.0.0.1:$upstream" 2>"$tmp/vg.$host.log" &
    cg_pid=$!
    for _ in $(seq 1 300); do
        curl -fs -H "Host: $host.localhost" "http://127.0.0.1:$port/small" >/dev/null && break
        sleep 0.2
    done
    wrk -t1 -c4 -d2s -H "Host: $host.localhost" "http://127.0.0.1:$port/small" >/dev/null
    callgrind_control -z "$cg_pid" >/dev/null
    out=$(wrk -t1 -c4 -d"$cg_duration" -H "Host: $host.localhost" "http://127.0.0.1:$port/small")
    callgrind_control -d "$cg_pid" >/dev/null
    kill -INT "$cg_pid"
    wait "$cg_pid" 2>/dev/null || true
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    # The dump taken after the zeroing: what the measured requests cost.
    instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$tmp/cg.$host.1")
    printf '%-8s %12s %16.0f\n' "$host" "$requests" "$(python3 -c "print($instructions / $requests)")"
done
fi
