#!/bin/sh
# Entrypoint of slipway/postgres. It keeps the official postgres image's contract so the
# provisioner drives either image the same way: on an empty $PGDATA it runs initdb for
# POSTGRES_USER with POSTGRES_PASSWORD and creates POSTGRES_DB; arguments starting with `-` are
# options for postgres; any other command (psql, pg_dump) runs as given.
set -eu

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
    exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: POSTGRES_PASSWORD must be set to initialise $PGDATA" >&2
        exit 1
    fi
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
    rm -f "$pwfile"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        quoted="$(printf '%s' "$db" | sed 's/"/""/g')"
        printf 'CREATE DATABASE "%s"\n' "$quoted" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
unset POSTGRES_PASSWORD

# Docker stops a container with SIGTERM, PostgreSQL's "smart" shutdown, which waits for every
# client to disconnect. SIGINT is the fast shutdown the official image's STOPSIGNAL asks for.
set +e
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
wait "$pid"
status=$?
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid"
    status=$?
done
exit "$status"
