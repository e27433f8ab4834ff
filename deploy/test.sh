#!/usr/bin/env bash
# Runs every Slipway test on a fresh Debian machine: installs what the integration and
# end-to-end tiers need, starts the Docker engine, builds the stack image once (reused after),
# checks formatting and lints, then runs unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

install_packages docker.io debootstrap git busybox-static ca-certificates pebble bind9-dnsutils curl openssl openssh-client python3-venv chromium chromium-driver
start_dockerd

say "building slipway"
cargo build -p slipway
ensure_stack target/debug/slipway slipway/stack:trixie slipway/postgres:17 slipway/redis:8

say "checking format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

say "running tests"
export SLIPWAY_BIN="$PWD/target/debug/slipway"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole run: cargo's last line belongs to an empty doc-test binary.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"

say "fuzzing the live API"
deploy/schemathesis.sh target/debug/slipway
