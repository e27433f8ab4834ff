#!/usr/bin/env bash
# User-space instructions per proxied 1 KB keep-alive request in Slipway's router, counted by
# valgrind's callgrind: a figure other work on a shared machine does not change. The router
# (`route_to`, release build) runs under callgrind in front of an nginx serving a 1 KB file;
# wrk warms it up, the counters are zeroed, wrk runs again and the counters are dumped, so
# start-up is not counted. Prints instructions per request and keeps the profile for
# callgrind_annotate when KEEP is set to a directory. SCHEME=https measures the router's TLS
# listener instead (its self-signed certificate, TLS 1.3), and CLOSE=1 a new connection per
# request (`Connection: close`; wrk resumes its TLS session on each, as browsers do).
#
#   ROUTE_TO_METRICS=prometheus DURATION=10s KEEP=/tmp/cg deploy/bench/router-callgrind.sh
#   SCHEME=https CLOSE=1 deploy/bench/router-callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in nginx wrk valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "install $tool (apt-get install nginx-light wrk valgrind)" >&2; exit 1; }
done
duration=${DURATION:-10s}
connections=${CONNECTIONS:-4}
router=${ROUTER_BIN:-$PWD/target/release/examples/route_to}
[ -x "$router" ] || { echo "build it first: cargo build --release -p slipway-router --example route_to" >&2; exit 1; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/up" "$tmp/cg"
head -c 1024 /dev/zero | tr '\0' 'a' > "$tmp/www/small"
chmod -R a+rX "$tmp/www"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream=$(free_port) slipway=$(free_port) slipway_tls=$(free_port)
scheme=${SCHEME:-http}
case $scheme in
    http) port=$slipway tls_args=() ;;
    https) port=$slipway_tls tls_args=("127.0.0.1:$slipway_tls") ;;
    *) echo "SCHEME must be http or https" >&2; exit 1 ;;
esac
wrk_args=(-H "Host: bench.localhost")
[ -n "${CLOSE:-}" ] && wrk_args+=(-H "Connection: close")
cat > "$tmp/up/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/up/nginx.pid;
error_log $tmp/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:$upstream; root $tmp/www; } }
CONF
nginx -p "$tmp/up" -c "$tmp/up/nginx.conf" -g 'daemon off;' &
up_pid=$!
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg/callgrind.out.%p" \
    "$router" "127.0.0.1:$slipway" bench.localhost "127.0.0.1:$upstream" "${tls_args[@]}" 2>"$tmp/cg/valgrind.log" &
router_pid=$!
trap 'kill $up_pid $router_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 300); do
    curl -fsk -o /dev/null -H "Host: bench.localhost" "$scheme://127.0.0.1:$port/small" && break
    sleep 0.1
done

wrk -t1 -c"$connections" -d3s "${wrk_args[@]}" "$scheme://127.0.0.1:$port/small" >/dev/null
callgrind_control -z "$router_pid" >/dev/null
out=$(wrk -t1 -c"$connections" -d"$duration" "${wrk_args[@]}" "$scheme://127.0.0.1:$port/small")
callgrind_control -d "$router_pid" >/dev/null
requests=$(awk '/requests in/ {print $1}' <<<"$out")
# The dump made after zeroing is the newest file; its `totals:` line is the instruction count.
dump=$(ls -t "$tmp"/cg/callgrind.out.* | head -1)
instructions=$(awk '/^(totals|summary):/ {print $2; exit}' "$dump")
echo "requests: $requests  instructions: $instructions"
python3 -c "import sys; print(f'instructions per request: {int(sys.argv[1]) / int(sys.argv[2]):,.0f}')" \
    "$instructions" "$requests"
if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$dump" "$KEEP/"
    echo "profile kept in $KEEP/$(basename "$dump")"
fi
