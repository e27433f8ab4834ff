#!/usr/bin/env bash
# Slipway's router vs nginx (Debian) as reverse proxies to the same upstream, in one run, with
# wrk (Debian): the upstream directly, nginx -> upstream, Slipway -> upstream; a 1 KB and a
# 1 MB response. Then HTTPS, both terminating TLS with the same certificate and key (ECDSA P-256,
# made here by openssl) for bench.localhost: keep-alive requests, and a new connection (so a new
# TLS handshake) per request with `Connection: close`. Prints requests/s, p50 and p99 of each
# and the Slipway/nginx ratios. Then full TLS handshakes per second (no session resumption) with
# `openssl s_time -new`, which sends no SNI, and with a Python client that sends SNI
# bench.localhost and never offers a session. Everything listens on 127.0.0.1 and stops at the end.
#
# PIN=1 gives the proxy a core of its own, as it has in production: wrk (one thread) and the
# upstream nginx run on CPU 0, the proxy under test (nginx with one worker, or the router with
# one worker thread) on CPU 1. Then "overhead vs direct" is what the extra hop costs the client,
# not the share of two cores the proxy takes from wrk and the upstream.
#
#   DURATION=10s CONNECTIONS=32 PARTS="http https handshakes" deploy/bench/router.sh
#   PIN=1 PARTS="http https" deploy/bench/router.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v nginx >/dev/null || { echo "install nginx: apt-get install nginx-light" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }
command -v openssl >/dev/null || { echo "install openssl: apt-get install openssl" >&2; exit 1; }
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
parts=" ${PARTS:-http https handshakes} "
router=${ROUTER_BIN:-$PWD/target/release/examples/route_to}
[ -x "$router" ] || { echo "build it first: cargo build --release -p slipway-router --example route_to" >&2; exit 1; }
# on_load / on_proxy: the CPUs for wrk and the upstream, and for the proxy under test.
if [ -n "${PIN:-}" ]; then
    [ "$(nproc)" -ge 2 ] || { echo "PIN needs two CPUs" >&2; exit 1; }
    on_load=(taskset -c 0) on_proxy=(taskset -c 1) wrk_threads=1 proxy_workers=1
else
    on_load=() on_proxy=() wrk_threads=2 proxy_workers=auto
fi

tmp=$(mktemp -d)
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/logs"
head -c 1024 /dev/zero | tr '\0' 'a' > "$tmp/www/small"
head -c 1048576 /dev/zero | tr '\0' 'b' > "$tmp/www/large"
chmod -R a+rX "$tmp/www"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream=$(free_port) nginx_proxy=$(free_port) slipway=$(free_port)
nginx_tls=$(free_port) slipway_tls=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench.localhost -addext subjectAltName=DNS:bench.localhost \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
# wrk sends the URL's host as SNI and Host; this keeps the name and connects to 127.0.0.1.
cat > "$tmp/loopback.lua" <<'LUA'
wrk.resolve = function(host, service)
   wrk.addrs = wrk.lookup("127.0.0.1", service)
end
LUA

# The upstream runs in its own nginx (on the load's CPU) when pinned, beside the proxy otherwise.
upstream_server="server { listen 127.0.0.1:$upstream; root $tmp/www; }"
if [ -n "${PIN:-}" ]; then
    mkdir -p "$tmp/up"
    cat > "$tmp/up/nginx.conf" <<CONF
worker_processes 1;
pid $tmp/up/nginx.pid;
error_log $tmp/logs/upstream-error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; keepalive_requests 100000; $upstream_server }
CONF
    upstream_server=
fi
cat > "$tmp/nginx.conf" <<CONF
worker_processes $proxy_workers;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    upstream app { server 127.0.0.1:$upstream; keepalive 64; }
    $upstream_server
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
    server {
        listen 127.0.0.1:$nginx_tls ssl;
        ssl_certificate $tmp/cert.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
CONF
up_pid=
if [ -n "${PIN:-}" ]; then
    "${on_load[@]}" nginx -p "$tmp/up" -c "$tmp/up/nginx.conf" -g 'daemon off;' &
    up_pid=$!
fi
"${on_proxy[@]}" nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
# The router runs one worker thread per CPU it may use: one when pinned.
"${on_proxy[@]}" "$router" "127.0.0.1:$slipway" bench.localhost "127.0.0.1:$upstream" \
    "127.0.0.1:$slipway_tls" "$tmp/cert.pem" "$tmp/key.pem" 2>"$tmp/logs/router.log" &
router_pid=$!
trap 'kill $up_pid $nginx_pid $router_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do
    curl -fs -o /dev/null -H "Host: bench.localhost" "http://127.0.0.1:$slipway/small" \
        && curl -fs -o /dev/null "http://127.0.0.1:$nginx_proxy/small" \
        && curl -fsk -o /dev/null --resolve "bench.localhost:$slipway_tls:127.0.0.1" "https://bench.localhost:$slipway_tls/small" \
        && curl -fsk -o /dev/null --resolve "bench.localhost:$nginx_tls:127.0.0.1" "https://bench.localhost:$nginx_tls/small" \
        && break
    sleep 0.1
done

# run NAME PORT FILE [WRK ARGS...]: prints "requests/s p50 p99" (latencies in ms)
run() {
    local name=$1 port=$2 file=$3 out
    shift 3
    out=$("${on_load[@]}" wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency -H "Host: bench.localhost" "$@" "http://127.0.0.1:$port/$file")
    report "$name $file" "$out"
}

# run_tls NAME PORT FILE [WRK ARGS...]: the same over HTTPS with SNI bench.localhost
run_tls() {
    local name=$1 port=$2 file=$3 out
    shift 3
    out=$("${on_load[@]}" wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency -s "$tmp/loopback.lua" "$@" "https://bench.localhost:$port/$file")
    report "$name https $file" "$out"
}

report() {
    local out=$2
    if grep -q "Non-2xx" <<<"$out"; then echo "$1: non-2xx responses" >&2; exit 1; fi
    if grep -q "Socket errors" <<<"$out"; then echo "$1: $(grep "Socket errors" <<<"$out")" >&2; fi
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.2f %.2f\n", rps, p50, p99 }' <<<"$out"
}

if [[ $parts == *" http "* ]]; then
printf '%-8s %-8s %12s %10s %10s\n' size target "requests/s" "p50 ms" "p99 ms"
for file in small large; do
    read -r d_rps d_p50 d_p99 < <(run direct "$upstream" "$file")
    read -r n_rps n_p50 n_p99 < <(run nginx "$nginx_proxy" "$file")
    read -r s_rps s_p50 s_p99 < <(run slipway "$slipway" "$file")
    printf '%-8s %-8s %12s %10s %10s\n' "$file" direct "$d_rps" "$d_p50" "$d_p99"
    printf '%-8s %-8s %12s %10s %10s\n' "$file" nginx "$n_rps" "$n_p50" "$n_p99"
    printf '%-8s %-8s %12s %10s %10s\n' "$file" slipway "$s_rps" "$s_p50" "$s_p99"
    python3 - "$s_rps" "$n_rps" "$s_p99" "$n_p99" "$d_rps" "$file" <<'PY'
import sys
s, n, sp, np_, d, f = sys.argv[1:]
s, n, sp, np_, d = map(float, (s, n, sp, np_, d))
print(f"{f}: slipway/nginx throughput {s / n:.2f}x, p99 {sp / np_:.2f}x; slipway overhead vs direct {100 * (1 - s / d):.0f}% throughput")
PY
done
fi

# Whether each server resumes a TLS session, which decides what a new connection costs: wrk
# keeps each connection's session across reconnects, so both sides resume when they can.
resumes() {
    local sess=$tmp/session.pem
    rm -f "$sess"
    sleep 0.3 | openssl s_client -connect "127.0.0.1:$1" -servername bench.localhost -sess_out "$sess" >/dev/null 2>&1 || true
    if sleep 0.3 | openssl s_client -connect "127.0.0.1:$1" -servername bench.localhost -sess_in "$sess" 2>/dev/null | grep -q '^Reused'; then
        echo yes
    else
        echo no
    fi
}
if [[ $parts == *" https "* ]]; then
echo
echo "HTTPS (TLS session resumption: nginx $(resumes "$nginx_tls"), slipway $(resumes "$slipway_tls"))"
printf '%-16s %-8s %12s %10s %10s\n' mode target "requests/s" "p50 ms" "p99 ms"
for mode in keepalive-small keepalive-large handshake-small; do
    case $mode in
        keepalive-small) file=small args=() ;;
        keepalive-large) file=large args=() ;;
        handshake-small) file=small args=(-H "Connection: close") ;;
    esac
    read -r n_rps n_p50 n_p99 < <(run_tls nginx "$nginx_tls" "$file" "${args[@]}")
    read -r s_rps s_p50 s_p99 < <(run_tls slipway "$slipway_tls" "$file" "${args[@]}")
    printf '%-16s %-8s %12s %10s %10s\n' "$mode" nginx "$n_rps" "$n_p50" "$n_p99"
    printf '%-16s %-8s %12s %10s %10s\n' "$mode" slipway "$s_rps" "$s_p50" "$s_p99"
    python3 - "$s_rps" "$n_rps" "$s_p99" "$n_p99" "$mode" <<'PY'
import sys
s, n, sp, np_ = map(float, sys.argv[1:5])
print(f"https {sys.argv[5]}: slipway/nginx throughput {s / n:.2f}x, p99 {sp / np_:.2f}x")
PY
done
fi

# Full handshakes: a new TCP connection and a TLS 1.3 handshake that resumes nothing (so one
# X25519 exchange and one ECDSA P-256 signature on the server), then close; one client process,
# one connection at a time. s_time sends no SNI, so nginx presents its only certificate (the
# bench one) and the router its self-signed fallback, also ECDSA P-256: the same server work.
# The Python client sends SNI, so both present the bench certificate.
# s_time prints one character per connection (`r` when resumed) and whole seconds only, so the
# wall time is taken here.
s_time_rate() {
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$("${on_load[@]}" openssl s_time -connect "127.0.0.1:$1" -new -time "${duration%s}" 2>/dev/null)
    t1=$(date +%s.%N)
    if grep -q '^[*r]*r' <<<"$out"; then echo "s_time resumed a session on port $1" >&2; exit 1; fi
    awk -v t="$(python3 -c "print($t1 - $t0)")" '/connections in .* real seconds/ { printf "%.0f\n", $1 / t }' <<<"$out"
}
sni_rate() {
    "${on_load[@]}" python3 - "$1" "${duration%s}" <<'PY'
import socket, ssl, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
count, reused, start = 0, 0, time.monotonic()
while time.monotonic() - start < seconds:
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="bench.localhost") as tls:
            reused += tls.session_reused
            count += 1
if reused:
    sys.exit(f"{reused} handshakes were resumed")
print(round(count / (time.monotonic() - start)))
PY
}
if [[ $parts == *" handshakes "* ]]; then
echo
echo "Full TLS handshakes/s (new session each, one client connection at a time)"
printf '%-24s %-8s %12s\n' client target "handshakes/s"
n_new=$(s_time_rate "$nginx_tls") s_new=$(s_time_rate "$slipway_tls")
n_sni=$(sni_rate "$nginx_tls") s_sni=$(sni_rate "$slipway_tls")
printf '%-24s %-8s %12s\n' "openssl s_time -new" nginx "$n_new" "openssl s_time -new" slipway "$s_new" \
    "python ssl, SNI" nginx "$n_sni" "python ssl, SNI" slipway "$s_sni"
python3 -c "import sys; a, b, c, d = map(float, sys.argv[1:]); print(f'full handshakes: slipway/nginx {b / a:.2f}x (s_time), {d / c:.2f}x (python, SNI)')" \
    "$n_new" "$s_new" "$n_sni" "$s_sni"
fi
