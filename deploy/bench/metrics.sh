#!/usr/bin/env bash
# What the metrics time series costs.
#
# 1. Router throughput with metrics on vs off, in one run: the router example proxying a 1 KB
#    file served by nginx, measured with wrk in three modes, interleaved over ROUNDS rounds so
#    drift hits every mode alike: `on` (Prometheus series and the per-app counters the time
#    series reads, as the server runs), `prometheus` (no per-app counters) and `off` (neither).
#    Prints the median requests/s of each mode and the cost of `on` against the others, and
#    the router's CPU time per request (user + system, from /proc), which a busy machine
#    disturbs less than throughput. With PARTS including `callgrind` (valgrind), each mode is
#    also measured in user-space instructions per request, which a loaded machine does not
#    blur: counters zeroed after a 2 s warm-up, wrk -t1 -c4 for CG_DURATION, counters dumped.
# 2. Memory and disk per app at 100 apps: the metrics_footprint example fills a store with a
#    full day of minute buckets and 30 days of hour buckets for each of 100 apps, and measures
#    the file, the read times and the resident memory the per-app state takes.
#
#   DURATION=10s CONNECTIONS=32 ROUNDS=5 PARTS="router callgrind footprint" deploy/bench/metrics.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
rounds=${ROUNDS:-5}
parts=" ${PARTS:-router footprint} "
cg_duration=${CG_DURATION:-8s}

if [[ $parts == *" router "* || $parts == *" callgrind "* ]]; then
command -v nginx >/dev/null || { echo "install nginx: apt-get install nginx-light" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
router=${ROUTER_BIN:-$PWD/target/release/examples/route_to}
[ -x "$router" ] || { echo "build it first: cargo build --release -p slipway-router --example route_to" >&2; exit 1; }
tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/logs"
head -c 1024 /dev/zero | tr '\0' 'a' > "$tmp/www/small"
chmod -R a+rX "$tmp/www"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream=$(free_port)
cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
    server { listen 127.0.0.1:$upstream; root $tmp/www; }
}
CONF
nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
router_pid=
trap 'kill $nginx_pid $router_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

# rps MODE: starts the router in MODE, prints wrk's requests/s through it and the router's CPU
# microseconds per request, stops it.
rps() {
    local port out
    port=$(free_port)
    ROUTE_TO_METRICS=$1 "$router" "127.0.0.1:$port" bench.localhost "127.0.0.1:$upstream" 2>"$tmp/logs/router.log" &
    router_pid=$!
    for _ in $(seq 1 50); do
        curl -fs -o /dev/null -H "Host: bench.localhost" "http://127.0.0.1:$port/small" && break
        sleep 0.1
    done
    local ticks_before ticks_after
    ticks_before=$(awk '{ print $14 + $15 }' "/proc/$router_pid/stat")
    out=$(wrk -t2 -c"$connections" -d"$duration" -H "Host: bench.localhost" "http://127.0.0.1:$port/small")
    ticks_after=$(awk '{ print $14 + $15 }' "/proc/$router_pid/stat")
    kill "$router_pid"; wait "$router_pid" 2>/dev/null || true
    router_pid=
    if grep -q "Non-2xx" <<<"$out"; then echo "$1: non-2xx responses" >&2; exit 1; fi
    awk -v ticks=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" '
        / requests in / { requests = $1 }
        /Requests\/sec/ { rps = $2 }
        END { printf "%.0f/%.2f\n", rps, ticks / hz * 1e6 / requests }' <<<"$out"
}

fi

if [[ $parts == *" router "* ]]; then
declare -A runs=([on]="" [prometheus]="" [off]="") cpu=([on]="" [prometheus]="" [off]="")
for round in $(seq 1 "$rounds"); do
    for mode in on prometheus off; do
        result=$(rps "$mode")
        runs[$mode]+="${result%/*} "
        cpu[$mode]+="${result#*/} "
    done
    echo "round $round of $rounds done" >&2
done
python3 - "${runs[on]}" "${runs[prometheus]}" "${runs[off]}" "${cpu[on]}" "${cpu[prometheus]}" "${cpu[off]}" <<'PY'
import statistics, sys
names = ("on", "prometheus", "off")
rps = dict(zip(names, ([float(x) for x in arg.split()] for arg in sys.argv[1:4])))
cpu = dict(zip(names, ([float(x) for x in arg.split()] for arg in sys.argv[4:7])))
m = {name: statistics.median(v) for name, v in rps.items()}
c = {name: statistics.median(v) for name, v in cpu.items()}
for name in names:
    print(f"{name:<11} median {m[name]:>8.0f} req/s, {c[name]:.2f} CPU µs/request   "
          f"runs {' '.join(f'{v:.0f}' for v in rps[name])}")
print(f"throughput cost of the per-app counters {100 * (1 - m['on'] / m['prometheus']):+.1f}% vs "
      f"prometheus only, of all metrics {100 * (1 - m['on'] / m['off']):+.1f}% vs off")
print(f"CPU per request of the per-app counters {100 * (c['on'] / c['prometheus'] - 1):+.1f}% vs "
      f"prometheus only, of all metrics {100 * (c['on'] / c['off'] - 1):+.1f}% vs off")
PY
fi

if [[ $parts == *" callgrind "* ]]; then
command -v valgrind >/dev/null || { echo "install valgrind: apt-get install valgrind" >&2; exit 1; }
printf '%-11s %10s %17s\n' mode requests "instructions/req"
for mode in on prometheus off; do
    port=$(free_port)
    ROUTE_TO_METRICS=$mode valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$mode" \
        "$router" "127.0.0.1:$port" bench.localhost "127.0.0.1:$upstream" 2>"$tmp/logs/vg.$mode.log" &
    router_pid=$!
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null -H "Host: bench.localhost" "http://127.0.0.1:$port/small" && break
        sleep 0.2
    done
    wrk -t1 -c4 -d2s -H "Host: bench.localhost" "http://127.0.0.1:$port/small" >/dev/null
    callgrind_control -z "$router_pid" >/dev/null 2>&1
    out=$(wrk -t1 -c4 -d"$cg_duration" -H "Host: bench.localhost" "http://127.0.0.1:$port/small")
    callgrind_control -d "$router_pid" >/dev/null 2>&1
    kill -INT "$router_pid"
    wait "$router_pid" 2>/dev/null || true
    router_pid=
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    # The dump taken after the zeroing: what the measured requests cost.
    instructions=$(awk '/^(summary|totals):/ { print $2; exit }' "$tmp/cg.$mode.1")
    printf '%-11s %10s %17.0f\n' "$mode" "$requests" "$(python3 -c "print($instructions / $requests)")"
done
fi

if [[ $parts == *" footprint "* ]]; then
footprint=${FOOTPRINT_BIN:-$PWD/target/release/examples/metrics_footprint}
[ -x "$footprint" ] || { echo "build it first: cargo build --release -p slipway-server --example metrics_footprint" >&2; exit 1; }
"$footprint" 100
fi
