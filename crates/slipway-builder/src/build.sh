# The build container's command, run by bash as user `app` in /app. Arguments: the control
# line marker, the built-in buildpacks in detection order (one word), then the buildpacks to
# run in order (built-in names or git URLs with an optional #ref); none means detect one among
# the built-ins. Lines starting with the marker are for the builder, not the user: which
# buildpacks ran, why the build stopped, and bin/release's YAML.
set -uo pipefail
exec 2>&1

marker=$1
builtins=$2
shift 2

build_dir=/app
cache_root=/cache
env_dir=/env

control() { echo "$marker $*"; }
indent() { sed -u 's/^/       /'; }

# Tools keep their own caches out of the image; buildpacks cache in CACHE_DIR.
export XDG_CACHE_HOME=/tmp/slipway-xdg-cache
# Output streams as it is written rather than when Python's buffer fills.
export PYTHONUNBUFFERED=1

if [ -r /etc/slipway/extra-ca.crt ]; then
  bundle=/tmp/slipway-ca-bundle.crt
  if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    cat /etc/ssl/certs/ca-certificates.crt /etc/slipway/extra-ca.crt > "$bundle"
  else
    cat /etc/slipway/extra-ca.crt > "$bundle"
  fi
  export SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle \
    NODE_EXTRA_CA_CERTS=$bundle CURL_CA_BUNDLE=$bundle GIT_SSL_CAINFO=$bundle
fi

# .slugignore uses .gitignore-style patterns: one with a slash is anchored at the app root,
# one without matches at any depth.
apply_slugignore() {
  local file=$build_dir/.slugignore pattern path
  [ -f "$file" ] || return 0
  shopt -s globstar nullglob dotglob
  local IFS=
  while read -r pattern || [ -n "$pattern" ]; do
    pattern=${pattern%$'\r'}
    pattern=${pattern%/}
    case "$pattern" in '' | '#'* | *..*) continue ;; esac
    if [[ $pattern == */* ]]; then
      pattern=${pattern#/}
    else
      pattern="**/$pattern"
    fi
    for path in "$build_dir"/$pattern; do
      rm -rf -- "$path"
    done
  done < "$file"
  shopt -u globstar nullglob dotglob
  echo "-----> Removed the files .slugignore lists"
}
apply_slugignore

dirs=()
names=()
displays=()

use_buildpack() {
  local dir=$1 name=$2 detected
  if ! detected=$("$dir/bin/detect" "$build_dir"); then
    return 1
  fi
  dirs+=("$dir")
  names+=("$name")
  detected=${detected%%$'\n'*}
  displays+=("${detected:-$name}")
  control buildpack "$name"
}

if [ "$#" -gt 0 ]; then
  index=0
  for spec in "$@"; do
    index=$((index + 1))
    if [ -d "/buildpacks/$spec" ]; then
      dir=/buildpacks/$spec
      name=$spec
    else
      url=${spec%%#*}
      ref=""
      if [[ $spec == *"#"* ]]; then
        ref=${spec#*#}
      fi
      name=$(basename "${url%.git}")
      dir=/tmp/slipway-buildpacks/$index-$name
      echo "-----> Fetching buildpack $spec"
      if ! git clone --quiet --depth 1 ${ref:+--branch "$ref"} "$url" "$dir" 2>&1 | indent; then
        control fetch-failed "$spec"
        exit 1
      fi
    fi
    if ! use_buildpack "$dir" "$name"; then
      control detect-failed "$name"
      exit 1
    fi
  done
else
  for name in $builtins; do
    if use_buildpack "/buildpacks/$name" "$name"; then
      break
    fi
  done
  if [ "${#dirs[@]}" -eq 0 ]; then
    control no-buildpack
    exit 1
  fi
fi

for i in "${!dirs[@]}"; do
  dir=${dirs[$i]}
  name=${names[$i]}
  echo "-----> ${displays[$i]} app detected"
  mkdir -p "$cache_root/$name"
  "$dir/bin/compile" "$build_dir" "$cache_root/$name" "$env_dir"
  code=$?
  if [ "$code" -ne 0 ]; then
    control compile-failed "$name" "$code"
    exit "$code"
  fi
  # A buildpack hands environment to the next one through its `export` file.
  if [ -f "$dir/export" ]; then
    set +u
    # shellcheck source=/dev/null
    . "$dir/export"
    set -u
  fi
done

last=$((${#dirs[@]} - 1))
if ! release=$("${dirs[$last]}/bin/release" "$build_dir"); then
  control release-failed "${names[$last]}"
  exit 1
fi
control release-begin
printf '%s\n' "$release"
control release-end

# The committed image must not keep the config vars or the build tooling.
rm -rf /env/* /buildpacks/* /tmp/slipway-*
control "done"
