#!/usr/bin/env bash
# Runs every Slipway test on a fresh Debian machine: installs what the integration and
# end-to-end tiers need, starts the Docker engine, builds the stack image once (reused after),
# checks formatting and lints, then runs unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

# The store tests and the leader e2e test run against PostgreSQL too: a cluster of Debian's
# package on 127.0.0.1:55432 with a user that may create databases (one per test).
start_test_postgres() {
    local version
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_lsclusters -h | awk '{print $2}' | grep -qx slipway-test ||
        as_root pg_createcluster "$version" slipway-test -p 55432 -- --auth-host=scram-sha-256 --auth-local=peer >/dev/null
    pg_ctlcluster "$version" slipway-test status >/dev/null 2>&1 ||
        as_root pg_ctlcluster "$version" slipway-test start
    as_root su postgres -c "psql -p 55432 -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'slipway'\"" | grep -q 1 ||
        as_root su postgres -c "psql -p 55432 -c \"CREATE ROLE slipway LOGIN CREATEDB PASSWORD 'slipway'\" -c 'CREATE DATABASE slipway OWNER slipway'"
    export SLIPWAY_TEST_POSTGRES_URL=postgres://slipway:slipway@127.0.0.1:55432/slipway
}

install_packages docker.io debootstrap git busybox-static ca-certificates pebble bind9-dnsutils curl openssl openssh-client python3-venv chromium chromium-driver
start_dockerd
install_packages postgresql
start_test_postgres

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

say "fuzzing the router (60 s)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
crates/slipway-router/fuzz/run.sh 60

say "fuzzing the live API"
deploy/schemathesis.sh target/debug/slipway
