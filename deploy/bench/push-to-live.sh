#!/usr/bin/env bash
# Push-to-live for the Flask fixture (tests/fixtures/flask-app), measured end to end with the
# real binary: `git push` returns once the new release answers through the router.
#   cold:   first push of a new app (empty build cache, pip downloads everything)
#   warm:   push of a new commit to the same app (cache restored)
#   config: `slipway config:set` until the new release is live
# With STACK=1 it also times `slipway stack:build` into a throwaway image.
# Prints each run and the medians. Traffic goes only to 127.0.0.1 and the app's containers.
#
#   RUNS=3 deploy/bench/push-to-live.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
bin=${SLIPWAY_BIN:-$PWD/target/release/slipway}
[ -x "$bin" ] || { echo "build it first: cargo build --release -p slipway" >&2; exit 1; }

tmp=$(mktemp -d)
export HOME="$tmp/home"
mkdir -p "$HOME"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ca=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--build-ca-bundle /etc/ssl/certs/ca-certificates.crt)
"$bin" server --data-dir "$tmp/data" --api-listen "127.0.0.1:$api_port" \
    --http-listen "127.0.0.1:$http_port" "${ca[@]}" 2>"$tmp/server.log" &
server=$!
apps=()
cleanup() {
    for app in "${apps[@]}"; do "$bin" apps:destroy -a "$app" --confirm "$app" >/dev/null 2>&1 || true; done
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$api_port/healthz" >/dev/null && break
    sleep 0.1
done
"$bin" login --url "http://127.0.0.1:$api_port" --token "$(cat "$tmp/data/admin.token")" >/dev/null

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

cold=() warm=() config=()
for i in $(seq 1 "$runs"); do
    app="bench-$i-$RANDOM"
    apps+=("$app")
    repo="$tmp/repo-$i"
    mkdir -p "$repo"
    cp tests/fixtures/flask-app/* "$repo/"
    (cd "$repo" && git init -q -b main && git add . && git commit -q -m "initial commit")
    "$bin" apps:create "$app" >/dev/null
    (cd "$repo" && "$bin" git:remote -a "$app" >/dev/null)

    t0=$(now); (cd "$repo" && git push -q platform main 2>/dev/null); t1=$(now)
    cold+=("$(elapsed "$t0" "$t1")")
    (cd "$repo" && git commit -q --allow-empty -m "fix: warm push")
    t0=$(now); (cd "$repo" && git push -q platform main 2>/dev/null); t1=$(now)
    warm+=("$(elapsed "$t0" "$t1")")
    t0=$(now); "$bin" config:set -a "$app" "GREETING=run$i" >/dev/null; t1=$(now)
    config+=("$(elapsed "$t0" "$t1")")
    body=$(curl -fs --resolve "$app.localhost:$http_port:127.0.0.1" "http://$app.localhost:$http_port/")
    [ "$body" = "run$i from release 1.0.2 on web.1" ] || { echo "unexpected body: $body" >&2; exit 1; }
    echo "run $i: cold ${cold[-1]} s, warm ${warm[-1]} s, config ${config[-1]} s"
done
echo "median of $runs: cold $(median "${cold[@]}") s, warm $(median "${warm[@]}") s, config $(median "${config[@]}") s"

if [ "${STACK:-0}" = 1 ]; then
    t0=$(now); "$bin" stack:build --image slipway/stack:bench >/dev/null; t1=$(now)
    docker rmi slipway/stack:bench >/dev/null
    echo "stack:build: $(elapsed "$t0" "$t1") s"
fi
