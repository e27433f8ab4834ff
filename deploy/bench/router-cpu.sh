#!/usr/bin/env bash
# CPU time per proxied request, Slipway's router vs nginx, which a busy machine distorts far less
# than requests/s: both proxy the same upstream (a separate nginx serving a 1 KB file) over
# keep-alive HTTP/1.1 with wrk, and the proxy's user + system time (from /proc, all its
# processes) is divided by the requests wrk completed. Prints microseconds per request, the
# median of RUNS alternating runs. BASELINE=path/to/another/route_to adds a second router build
# to the alternation (same upstream, same minute), to compare two builds on a busy machine.
#
#   RUNS=5 DURATION=5s CONNECTIONS=32 deploy/bench/router-cpu.sh
#   BASELINE=/tmp/route_to.before RUNS=7 deploy/bench/router-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nginx >/dev/null || { echo "install nginx: apt-get install nginx-light" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
runs=${RUNS:-5}
duration=${DURATION:-5s}
connections=${CONNECTIONS:-32}
router=${ROUTER_BIN:-$PWD/target/release/examples/route_to}
[ -x "$router" ] || { echo "build it first: cargo build --release -p slipway-router --example route_to" >&2; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/up" "$tmp/px"
head -c 1024 /dev/zero | tr '\0' 'a' > "$tmp/www/small"
chmod -R a+rX "$tmp/www"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream=$(free_port) nginx_proxy=$(free_port) slipway=$(free_port) baseline=$(free_port)
cat > "$tmp/up/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/up/nginx.pid;
error_log $tmp/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:$upstream; root $tmp/www; } }
CONF
cat > "$tmp/px/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/px/nginx.pid;
error_log $tmp/px/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream app { server 127.0.0.1:$upstream; keepalive 64; }
    server {
        listen 127.0.0.1:$nginx_proxy;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
nginx -p "$tmp/up" -c "$tmp/up/nginx.conf" -g 'daemon off;' &
up_pid=$!
nginx -p "$tmp/px" -c "$tmp/px/nginx.conf" -g 'daemon off;' &
proxy_pid=$!
"$router" "127.0.0.1:$slipway" bench.localhost "127.0.0.1:$upstream" 2>/dev/null &
router_pid=$!
baseline_pid=
if [ -n "${BASELINE:-}" ]; then
    "$BASELINE" "127.0.0.1:$baseline" bench.localhost "127.0.0.1:$upstream" 2>/dev/null &
    baseline_pid=$!
fi
trap 'kill $up_pid $proxy_pid $router_pid $baseline_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do
    curl -fs -o /dev/null -H "Host: bench.localhost" "http://127.0.0.1:$slipway/small" \
        && curl -fs -o /dev/null "http://127.0.0.1:$nginx_proxy/small" \
        && { [ -z "$baseline_pid" ] || curl -fs -o /dev/null -H "Host: bench.localhost" "http://127.0.0.1:$baseline/small"; } \
        && break
    sleep 0.1
done

# cpu_ticks PID: "user system" clock ticks of the process and its children (nginx workers).
cpu_ticks() {
    local user=0 system=0 pid
    for pid in $1 $(pgrep -P "$1" || true); do
        read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
        user=$((user + u)) system=$((system + s))
    done
    echo "$user $system"
}
# measure PID PORT: microseconds of the proxy's CPU per completed request, "total/user/system".
measure() {
    local before after out requests
    before=$(cpu_ticks "$1")
    out=$(wrk -t2 -c"$connections" -d"$duration" -H "Host: bench.localhost" "http://127.0.0.1:$2/small")
    after=$(cpu_ticks "$1")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    python3 - $before $after "$requests" <<'PY'
import os, sys
u0, s0, u1, s1, r = map(int, sys.argv[1:])
us = 1e6 / os.sysconf("SC_CLK_TCK") / r
print(f"{(u1 - u0 + s1 - s0) * us:.1f}/{(u1 - u0) * us:.1f}/{(s1 - s0) * us:.1f}")
PY
}
nginx_runs=() slipway_runs=() baseline_runs=()
echo "load at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq 1 "$runs"); do
    nginx_runs+=("$(measure "$proxy_pid" "$nginx_proxy")")
    slipway_runs+=("$(measure "$router_pid" "$slipway")")
    if [ -n "$baseline_pid" ]; then
        baseline_runs+=("$(measure "$baseline_pid" "$baseline")")
    fi
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "${nginx_runs[*]}" "${slipway_runs[*]}" "${baseline_runs[*]}" <<'PY'
import statistics, sys
# Each run is "total/user/system" microseconds per request.
def runs(arg):
    return [tuple(map(float, run.split("/"))) for run in arg.split()]
def report(name, rows):
    total = statistics.median(r[0] for r in rows)
    user = statistics.median(r[1] for r in rows)
    system = statistics.median(r[2] for r in rows)
    print(f"{name:8} CPU per request (us): {' '.join(str(r[0]) for r in rows)}  "
          f"median {total:.1f} (user {user:.1f}, system {system:.1f})")
    return total
n = report("nginx", runs(sys.argv[1]))
s = report("slipway", runs(sys.argv[2]))
b = report("baseline", runs(sys.argv[3])) if sys.argv[3] else None
print(f"slipway/nginx CPU per request: {s / n:.2f}x")
if b:
    print(f"baseline/nginx CPU per request: {b / n:.2f}x")
PY
