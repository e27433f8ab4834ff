#!/usr/bin/env bash
# Dashboard page weight and server render time for an app with 50 releases and 100 config
# vars: its overview, releases and config pages, fetched with the admin's token as the session
# cookie. Weight is the HTML transferred (no compression) plus the assets a first visit loads;
# render time is curl's time to first byte on loopback (authorization, the store reads and the
# template), the median of RUNS fetches after one warm-up.
# Traffic goes only to 127.0.0.1 and the app's container.
#
#   RUNS=20 deploy/bench/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-20}
. deploy/bench/lib.sh
# HTTPS and SSH on free ports too, so a server already on the defaults does not stop this one.
SLIPWAY_HTTPS_LISTEN=127.0.0.1:$(free_port) SLIPWAY_SSH_LISTEN=127.0.0.1:$(free_port)
export SLIPWAY_HTTPS_LISTEN SLIPWAY_SSH_LISTEN
bench_start

app=dashbench
bench_app static-server "$tmp/repo" "$app"
(cd "$tmp/repo" && git push -q platform main 2>/dev/null)
token=$(cat "$tmp/data/admin.token")
api="http://127.0.0.1:$api_port"
patch() { curl -fsS -o /dev/null -X PATCH -H "Authorization: Bearer $token" \
    -H 'content-type: application/json' -d "$1" "$api/v1/apps/$app/config"; }

echo "cutting 49 config releases (100 vars in all)"
first=$(python3 -c 'import json; print(json.dumps({f"VAR_{i:03}": "x" * 40 for i in range(52)}))')
patch "$first"
for i in $(seq 52 99); do patch "{\"VAR_$(printf %03d "$i")\": \"$(printf 'y%.0s' $(seq 40))\"}"; done
releases=$(curl -fsS -H "Authorization: Bearer $token" "$api/v1/apps/$app/releases" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
vars=$(curl -fsS -H "Authorization: Bearer $token" "$api/v1/apps/$app/config" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "app $app: $releases releases, $vars config vars"

assets=0
for asset in dashboard.css dashboard.js htmx.min.js; do
    size=$(curl -fsS -o /dev/null -w '%{size_download}' "$api/assets/$asset")
    assets=$((assets + size))
done
printf '%-10s %10s %14s %18s\n' page "html KB" "+assets KB" "render ms (p50)"
for page in "" /releases /config; do
    url="$api/apps/$app$page"
    curl -fsS -o /dev/null -b "slipway_session=$token" "$url"
    times=()
    for _ in $(seq 1 "$runs"); do
        times+=("$(curl -fsS -o /dev/null -b "slipway_session=$token" -w '%{time_starttransfer}' "$url")")
    done
    size=$(curl -fsS -o /dev/null -b "slipway_session=$token" -w '%{size_download}' "$url")
    ms=$(python3 -c "print(f'{$(median "${times[@]}") * 1000:.1f}')")
    printf '%-10s %10.1f %14.1f %18s\n' "${page:-overview}" \
        "$(python3 -c "print($size / 1024)")" "$(python3 -c "print(($size + $assets) / 1024)")" "$ms"
done
