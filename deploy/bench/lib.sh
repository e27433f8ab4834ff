# Shared by the benchmark scripts: a server of the release build on free loopback ports with a
# temp data dir and HOME, logged in; cleaned up on exit. Sourced, not run.
#   bench_start        sets $bin, $tmp, $api_port, $http_port; registers cleanup
#   bench_track APP    destroys APP at exit
#   now / elapsed T0 T1 / median N...

bin=${SLIPWAY_BIN:-$PWD/target/release/slipway}
[ -x "$bin" ] || { echo "build it first: cargo build --release -p slipway" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

bench_apps=()
bench_track() { bench_apps+=("$1"); }

bench_cleanup() {
    for app in "${bench_apps[@]}"; do "$bin" apps:destroy -a "$app" --confirm "$app" >/dev/null 2>&1 || true; done
    kill "$bench_server" 2>/dev/null || true
    wait "$bench_server" 2>/dev/null || true
    rm -rf "$tmp"
}

bench_start() {
    tmp=$(mktemp -d)
    export HOME="$tmp/home"
    mkdir -p "$HOME"
    export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test
    export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test
    api_port=$(free_port)
    http_port=$(free_port)
    local ca=()
    [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--build-ca-bundle /etc/ssl/certs/ca-certificates.crt)
    "$bin" server --data-dir "$tmp/data" --api-listen "127.0.0.1:$api_port" \
        --http-listen "127.0.0.1:$http_port" "${ca[@]}" 2>"$tmp/server.log" &
    bench_server=$!
    trap bench_cleanup EXIT
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$api_port/healthz" >/dev/null && break
        sleep 0.1
    done
    "$bin" login --url "http://127.0.0.1:$api_port" --token "$(cat "$tmp/data/admin.token")" >/dev/null
}

# bench_app FIXTURE DIR APP: a git repo of tests/fixtures/FIXTURE pushed to a new app APP.
bench_app() {
    local fixture=$1 repo=$2 app=$3
    mkdir -p "$repo"
    cp "tests/fixtures/$fixture"/* "$repo/"
    (cd "$repo" && git init -q -b main && git add . && git commit -q -m "initial commit")
    "$bin" apps:create "$app" >/dev/null
    bench_track "$app"
    (cd "$repo" && "$bin" git:remote -a "$app" >/dev/null)
}
