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

# The Swarm runtime's tests (engine, add-ons, tests/e2e/swarm.rs) need the engine to be a
# swarm manager: a single-node swarm advertised on loopback, so nothing leaves the machine.
# Idempotent: an engine already in a swarm is left as it is, as long as it is a manager.
start_test_swarm() {
    local state
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != active ]; then
        say "making the Docker engine a single-node swarm manager"
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null ||
            die "docker swarm init --advertise-addr 127.0.0.1 failed (swarm state: $state)"
    fi
    [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] ||
        die "the Docker engine is in a swarm but not a manager: the swarm tests need a manager (docker swarm leave, then rerun)"
}

# The registry tests (engine crate, tests/e2e/swarm_registry.rs) push to Debian's
# docker-registry (distribution 2.8) on 127.0.0.1:5000: anonymous, plain HTTP (Docker allows
# that for 127.0.0.0/8 without configuration), storage in a directory of its own. On a systemd
# machine the package starts its own registry on :5000 (with a login): that one is stopped.
start_test_registry() {
    local dir=/var/lib/slipway-test-registry
    if curl -fs -o /dev/null http://127.0.0.1:5000/v2/; then return 0; fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
    say "starting a test registry on 127.0.0.1:5000"
    as_root mkdir -p "$dir/storage"
    as_root tee "$dir/config.yml" >/dev/null <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
CONFIG
    as_root sh -c "nohup docker-registry serve $dir/config.yml >/var/log/slipway-test-registry.log 2>&1 &"
    for _ in $(seq 1 30); do
        curl -fs -o /dev/null http://127.0.0.1:5000/v2/ && return 0
        sleep 1
    done
    die "the test registry did not answer on 127.0.0.1:5000 within 30 s: see /var/log/slipway-test-registry.log"
}

install_packages docker.io debootstrap git busybox-static ca-certificates pebble bind9-dnsutils curl openssl openssh-client python3-venv chromium chromium-driver
start_dockerd
start_test_swarm
install_packages postgresql
start_test_postgres
install_packages docker-registry
start_test_registry

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
