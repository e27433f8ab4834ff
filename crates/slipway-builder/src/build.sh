# The build container's command, run by bash as user `app` in /app. Arguments: the control
# line marker, the built-in buildpacks in detection order (one word), then the folders under
# /buildpacks of the buildpacks to run in order (built-ins, and git buildpacks the builder
# fetched); none means detect one among the built-ins. A folder with a buildpack.toml is a
# Cloud Native Buildpack, any other a classic one. Lines starting with the marker are for the
# builder, not the user: which buildpacks ran, why the build stopped, bin/release's YAML and
# every Cloud Native Buildpack's launch.toml, in order.
set -uo pipefail
exec 2>&1

marker=$1
builtins=$2
shift 2

build_dir=/app
cache_root=/cache
env_dir=/env

control() { echo "$marker $*"; }
quote() { printf '%q' "$1"; }

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

# The Cloud Native Buildpacks platform: the config vars are its env, the stack its target.
platform_dir=/tmp/slipway-platform
mkdir -p "$platform_dir"
ln -sfn "$env_dir" "$platform_dir/env"
case "$(uname -m)" in
  x86_64) cnb_arch=amd64 ;;
  aarch64) cnb_arch=arm64 ;;
  *) cnb_arch=$(uname -m) ;;
esac
# shellcheck source=/dev/null
distro=$(. /etc/os-release && echo "${ID:-linux} ${VERSION_ID:-}")
export CNB_PLATFORM_DIR=$platform_dir CNB_TARGET_OS=linux CNB_TARGET_ARCH=$cnb_arch \
  CNB_TARGET_DISTRO_NAME=${distro%% *} CNB_TARGET_DISTRO_VERSION=${distro#* }

is_cnb() { [ -f "$1/buildpack.toml" ]; }

dirs=()
names=()
displays=()
# A Cloud Native Buildpack's build plan as its bin/detect wrote it; empty for a classic one.
plans=()

use_buildpack() {
  local dir=$1 name=$2 detected plan
  if is_cnb "$dir"; then
    plan=$(mktemp /tmp/slipway-plan.XXXXXX)
    if ! (cd "$build_dir" && CNB_BUILDPACK_DIR=$dir CNB_BUILD_PLAN_PATH=$plan \
      "$dir/bin/detect" "$platform_dir" "$plan") > /dev/null; then
      return 1
    fi
    detected=$(sed -n 's/^[[:space:]]*name[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$dir/buildpack.toml" | head -n 1)
  elif ! detected=$("$dir/bin/detect" "$build_dir"); then
    return 1
  fi
  dirs+=("$dir")
  names+=("$name")
  plans+=("${plan:-}")
  detected=${detected%%$'\n'*}
  displays+=("${detected:-$name}")
  control buildpack "$name"
}

if [ "$#" -gt 0 ]; then
  for name in "$@"; do
    if ! use_buildpack "/buildpacks/$name" "$name"; then
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

# The Cloud Native Buildpacks' requires and provides must match up; each one's bin/build gets
# the plan entries of what it provides (cnb-plan.py, shipped beside the buildpacks).
cnb_args=()
for i in "${!dirs[@]}"; do
  if is_cnb "${dirs[$i]}"; then cnb_args+=("${names[$i]}" "${plans[$i]}"); fi
done
if [ "${#cnb_args[@]}" -gt 0 ]; then
  if ! command -v python3 > /dev/null; then
    control plan-failed "the stack image has no python3, which resolving the build plan of Cloud Native Buildpacks needs"
    exit 1
  fi
  python3 /buildpacks/.slipway/cnb-plan.py "$marker" "${cnb_args[@]}" || exit 1
fi

# Exports for a profile script: a layer's env folder, where a file names a variable and its
# suffix says how its value applies (none or .override: replace, .default: unless set,
# .append/.prepend: joined with the .delim file's text).
env_exports() {
  local dir=$1 file var name delim value
  [ -d "$dir" ] || return 0
  for file in "$dir"/*; do
    [ -f "$file" ] || continue
    var=$(basename "$file")
    name=${var%.*}
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    value=$(cat "$file")
    delim=$(cat "$dir/$name.delim" 2> /dev/null || true)
    case "$var" in
      *.delim) ;;
      *.default) echo "if [ -z \"\${$name+set}\" ]; then export $name=$(quote "$value"); fi" ;;
      *.append) echo "export $name=\"\${$name:+\$$name}\"$(quote "${delim}")$(quote "$value")" ;;
      *.prepend) echo "export $name=$(quote "$value")$(quote "${delim}")\"\${$name:-}\"" ;;
      *) echo "export $name=$(quote "$value")" ;;
    esac
  done
}

# Build layers of earlier Cloud Native Buildpacks: seen by the later ones, gone from the image.
build_layers=()

# Runs a Cloud Native Buildpack's bin/build with its layers in /app/.layers/<name> and its
# plan entries: cached layers come back from CACHE_DIR first, launch layers stay in the image
# (with a profile script for their bin, lib and env), build layers serve the buildpacks after
# it, the others go.
cnb_build() {
  local dir=$1 name=$2 cache=$3 plan=$4 layers=$build_dir/.layers/$2 toml layer path profile
  local build_profile=/tmp/slipway-build-env-$2.sh is_build is_launch
  rm -rf "$layers"
  mkdir -p "$layers" "$build_dir/.profile.d"
  if [ -d "$cache/layers" ]; then
    cp -a "$cache/layers/." "$layers/"
  fi
  (cd "$build_dir" && CNB_BUILDPACK_DIR=$dir CNB_LAYERS_DIR=$layers CNB_BP_PLAN_PATH=$plan \
    "$dir/bin/build" "$layers" "$platform_dir" "$plan") || return $?
  rm -rf "$cache/layers"
  mkdir -p "$cache/layers"
  profile=$build_dir/.profile.d/cnb-$name.sh
  : > "$profile"
  : > "$build_profile"
  for toml in "$layers"/*.toml; do
    [ -f "$toml" ] || continue
    layer=$(basename "$toml" .toml)
    case "$layer" in launch | build | store) continue ;; esac
    path=$layers/$layer
    if grep -Eq '^[[:space:]]*cache[[:space:]]*=[[:space:]]*true' "$toml"; then
      cp "$toml" "$cache/layers/"
      if [ -d "$path" ]; then cp -a "$path" "$cache/layers/"; fi
    fi
    is_build=false
    is_launch=false
    if grep -Eq '^[[:space:]]*build[[:space:]]*=[[:space:]]*true' "$toml"; then is_build=true; fi
    if grep -Eq '^[[:space:]]*launch[[:space:]]*=[[:space:]]*true' "$toml"; then is_launch=true; fi
    if $is_launch; then
      layer_exports "$path" >> "$profile"
      env_exports "$path/env.launch" >> "$profile"
    fi
    if $is_build; then
      layer_exports "$path" >> "$build_profile"
      env_exports "$path/env.build" >> "$build_profile"
    fi
    if ! $is_launch; then
      if $is_build; then
        build_layers+=("$path" "$toml")
      else
        rm -rf "$path" "$toml"
      fi
    fi
  done
  # A folder without its .toml is not a layer.
  for path in "$layers"/*/; do
    if [ ! -f "${path%/}.toml" ]; then rm -rf "$path"; fi
  done
  # The next buildpack sees this one's launch and build layers.
  set +u
  # shellcheck source=/dev/null
  . "$profile"
  # shellcheck source=/dev/null
  . "$build_profile"
  set -u
}

# A layer's bin, lib and env as profile lines.
layer_exports() {
  local path=$1
  if [ -d "$path/bin" ]; then echo "export PATH=$(quote "$path/bin"):\"\$PATH\""; fi
  if [ -d "$path/lib" ]; then
    echo "export LD_LIBRARY_PATH=$(quote "$path/lib")\"\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
  fi
  env_exports "$path/env"
}

for i in "${!dirs[@]}"; do
  dir=${dirs[$i]}
  name=${names[$i]}
  echo "-----> ${displays[$i]} app detected"
  mkdir -p "$cache_root/$name"
  if is_cnb "$dir"; then
    cnb_build "$dir" "$name" "$cache_root/$name" "${plans[$i]}.entries"
  else
    "$dir/bin/compile" "$build_dir" "$cache_root/$name" "$env_dir"
  fi
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

# Every Cloud Native Buildpack's processes, in order: a later one's type replaces an earlier's.
for i in "${!dirs[@]}"; do
  launch_toml=$build_dir/.layers/${names[$i]}/launch.toml
  if is_cnb "${dirs[$i]}" && [ -f "$launch_toml" ]; then
    control launch-begin "${names[$i]}"
    cat "$launch_toml"
    echo
    control launch-end
  fi
done
if [ "${#build_layers[@]}" -gt 0 ]; then rm -rf "${build_layers[@]}"; fi

last=$((${#dirs[@]} - 1))
if is_cnb "${dirs[$last]}"; then
  release="---"
elif ! release=$("${dirs[$last]}/bin/release" "$build_dir"); then
  control release-failed "${names[$last]}"
  exit 1
fi
control release-begin
printf '%s\n' "$release"
control release-end

# The committed image must not keep the config vars or the build tooling.
rm -rf /env/* /buildpacks/* /buildpacks/.slipway /tmp/slipway-*
control "done"
