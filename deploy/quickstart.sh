#!/usr/bin/env bash
# Starts Slipway on this machine with embedded defaults: SQLite store, built-in router on
# 127.0.0.1:8080 (HTTPS 127.0.0.1:8443), API on 127.0.0.1:7070, apps at http://<app>.localhost:8080.
# Installs the Docker engine if missing, builds slipway and the stack image if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

install_packages docker.io debootstrap git ca-certificates
start_dockerd
say "building slipway (release)"
cargo build --release -p slipway
bin=target/release/slipway
ensure_stack "$bin" slipway/stack:trixie slipway/postgres:17 slipway/redis:8

args=(server --api-listen 127.0.0.1:7070 --http-listen 127.0.0.1:8080 --https-listen 127.0.0.1:8443 --apps-domain localhost)
# Trust the machine's CA bundle in builds, so pip and npm work behind TLS-intercepting proxies.
[ -f /etc/ssl/certs/ca-certificates.crt ] && args+=(--build-ca-bundle /etc/ssl/certs/ca-certificates.crt)
say "starting slipway; log in from another terminal with the command it prints"
exec "$bin" "${args[@]}" "$@"
