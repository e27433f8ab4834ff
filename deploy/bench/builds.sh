#!/usr/bin/env bash
# Builds of the Python (tests/fixtures/flask-app) and Node.js (tests/fixtures/node-app)
# fixtures, measured end to end with the real binary: `git push` returns once the release
# answers through the router.
#   cold:  first push of a new app (empty build cache: pip / npm download everything)
#   warm:  push after a one-line change to the app's code (build cache restored)
#   naive: the same app with a plain Dockerfile (FROM the stack, COPY ., install), cold and
#          after the same one-line change, for the image size and the rebuild it costs
# Image sizes are what each adds to the stack image. Prints each run and the medians.
# Traffic goes only to 127.0.0.1 and the apps' containers.
#
#   RUNS=3 deploy/bench/builds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-3}
. deploy/bench/lib.sh
bench_start

stack_size=$(docker image inspect -f '{{.Size}}' slipway/stack:trixie)
mib() { python3 -c "print(f'{($1 - $stack_size) / 1048576:.1f}')"; }

# one_line_change FIXTURE REPO: the edit a developer makes between two pushes.
one_line_change() {
    case "$1" in
        flask-app) echo "# edited $RANDOM" >> "$2/app.py" ;;
        node-app) echo "// edited $RANDOM" >> "$2/server.js" ;;
    esac
    (cd "$2" && git commit -q -am "fix: one-line change")
}

# naive_dockerfile FIXTURE REPO: what one would write without buildpacks. The host's CA bundle
# goes along so pip and npm get through the TLS-intercepting proxy, as the buildpacks do.
naive_dockerfile() {
    cp /etc/ssl/certs/ca-certificates.crt "$2/ca.crt"
    case "$1" in
        flask-app) cat > "$2/Dockerfile" << 'EOF'
FROM slipway/stack:trixie
COPY --chown=app:app . /app
WORKDIR /app
USER app
ENV PIP_CERT=/app/ca.crt PATH=/app/.venv/bin:$PATH
RUN python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt
EOF
        ;;
        node-app) cat > "$2/Dockerfile" << 'EOF'
FROM slipway/stack:trixie
COPY --chown=app:app . /app
WORKDIR /app
USER app
ENV NODE_EXTRA_CA_CERTS=/app/ca.crt
RUN npm ci --no-audit --no-fund && npm run build && npm prune --omit=dev
CMD ["npm", "start"]
EOF
        ;;
    esac
    (cd "$2" && git add -A && git commit -q -m "naive Dockerfile")
}

push() {
    local t0 t1
    t0=$(now)
    (cd "$1" && git push -q platform main 2> /dev/null)
    t1=$(now)
    elapsed "$t0" "$t1"
}

answers() {
    curl -fs --resolve "$1.localhost:$http_port:127.0.0.1" "http://$1.localhost:$http_port/" > /dev/null \
        || { echo "$1 does not answer through the router" >&2; exit 1; }
}

image_size() { docker image inspect -f '{{.Size}}' "slipway/$1:$2"; }

for fixture in flask-app node-app; do
    cold=() warm=() naive_cold=() naive_warm=()
    size="" naive_size=""
    for i in $(seq 1 "$runs"); do
        app="bench-$i-$RANDOM"
        bench_app "$fixture" "$tmp/$app" "$app"
        cold+=("$(push "$tmp/$app")")
        answers "$app"
        one_line_change "$fixture" "$tmp/$app"
        warm+=("$(push "$tmp/$app")")
        answers "$app"
        size=$(image_size "$app" 1.0.1)

        naive="naive-$i-$RANDOM"
        bench_app "$fixture" "$tmp/$naive" "$naive"
        naive_dockerfile "$fixture" "$tmp/$naive"
        naive_cold+=("$(push "$tmp/$naive")")
        answers "$naive"
        one_line_change "$fixture" "$tmp/$naive"
        naive_warm+=("$(push "$tmp/$naive")")
        answers "$naive"
        naive_size=$(image_size "$naive" 1.0.1)
        echo "$fixture run $i: cold ${cold[-1]} s, warm ${warm[-1]} s; naive Dockerfile cold ${naive_cold[-1]} s, after a one-line change ${naive_warm[-1]} s"
    done
    echo "$fixture median of $runs: cold $(median "${cold[@]}") s, warm $(median "${warm[@]}") s;" \
        "naive Dockerfile cold $(median "${naive_cold[@]}") s, after a one-line change $(median "${naive_warm[@]}") s"
    echo "$fixture image over the stack: buildpacks $(mib "$size") MiB, naive Dockerfile $(mib "$naive_size") MiB"
done

# The static buildpack's server against Python's http.server (tests/fixtures/static-server),
# both through the router: requests/s for a small page at `/`, wrk with 50 connections for
# 10 s each.
rps() {
    wrk -t 2 -c 50 -d 10s -H "Host: $1.localhost" "http://127.0.0.1:$http_port/" \
        | awk '/Non-2xx/ {bad = $5} /Requests\/sec/ {rps = $2} END {printf "%.0f requests/s (%d not 2xx/3xx)", rps, bad}'
}
site="static-$RANDOM"
mkdir -p "$tmp/$site"
cp -r tests/fixtures/static-site/. "$tmp/$site/"
(cd "$tmp/$site" && git init -q -b main && git add . && git commit -q -m "initial commit")
"$bin" apps:create "$site" > /dev/null
bench_track "$site"
(cd "$tmp/$site" && "$bin" git:remote -a "$site" > /dev/null)
echo "static site cold push: $(push "$tmp/$site") s"
answers "$site"
plain="plain-$RANDOM"
bench_app static-server "$tmp/$plain" "$plain"
push "$tmp/$plain" > /dev/null
answers "$plain"
echo "static server: $(rps "$site"); python3 -m http.server: $(rps "$plain")"
