#!/usr/bin/env bash
# Fuzzes the live REST API with schemathesis (PyPI) from its own OpenAPI document and fails when
# any generated request gets a 5xx. Starts a throwaway `slipway server` on loopback ports.
# Usage: deploy/schemathesis.sh [SLIPWAY_BINARY] (default target/debug/slipway)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

bin=${1:-target/debug/slipway}
venv=target/schemathesis-venv
version=4.32.5
if [ ! -x "$venv/bin/schemathesis" ] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
    say "installing schemathesis $version from PyPI"
    python3 -m venv "$venv"
    # The machine's CA bundle, so pip works behind TLS-intercepting proxies.
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$venv/bin/pip" install -q "schemathesis==$version"
fi

data=$(mktemp -d)
log="$data/server.log"
"$bin" server --data-dir "$data/state" --api-listen 127.0.0.1:17970 --http-listen 127.0.0.1:17980 \
    --https-listen 127.0.0.1:17943 --ssh-listen 127.0.0.1:17922 --apps-domain localhost >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    [ -s "$data/state/admin.token" ] && curl -fsS --noproxy '*' http://127.0.0.1:17970/healthz >/dev/null 2>&1 && break
    sleep 0.2
done
[ -s "$data/state/admin.token" ] || { cat "$log"; echo "slipway server did not start" >&2; exit 1; }
token=$(cat "$data/state/admin.token")

say "fuzzing the API with schemathesis (no 5xx allowed)"
# /v1/logout would revoke the token the run uses; git is not JSON.
(cd "$data" && "$OLDPWD/$venv/bin/schemathesis" run http://127.0.0.1:17970/v1/openapi.json \
    --checks not_a_server_error -H "Authorization: Bearer $token" \
    --exclude-path /v1/logout --exclude-path-regex '^/git/' \
    --max-examples 10 --max-time 90 --request-timeout 15 --seed 1 \
    --phases coverage,fuzzing)
if grep -q "panicked" "$log"; then
    cat "$log"
    echo "the server panicked during the run" >&2
    exit 1
fi
