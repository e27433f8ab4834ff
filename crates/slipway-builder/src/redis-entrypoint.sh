#!/bin/sh
# Entrypoint of slipway/redis, with the official redis image's contract: arguments starting
# with `-` (or a config file) are for redis-server; any other command runs as given.
set -eu

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
exec "$@"
