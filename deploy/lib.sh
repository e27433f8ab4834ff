# Shared by quickstart.sh and test.sh: install Debian packages and start the Docker engine.
# Sourced, not run.

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# install_packages PKG... : installs the Debian packages that are missing.
install_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# start_dockerd: starts the Docker engine when it is not answering, and waits (bounded) for it.
start_dockerd() {
    if docker info >/dev/null 2>&1; then return 0; fi
    say "starting dockerd"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        as_root systemctl start docker
    else
        as_root sh -c 'nohup dockerd >/var/log/slipway-dockerd.log 2>&1 &'
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "dockerd did not start within 60 s: see /var/log/slipway-dockerd.log"
}

# ensure_stack BINARY IMAGE...: runs `slipway stack:build` when any of the images (the stack,
# then the add-on images) is missing; it builds only what is missing.
ensure_stack() {
    local bin=$1 image
    shift
    for image in "$@"; do
        if ! docker image inspect "$image" >/dev/null 2>&1; then
            say "building the stack and add-on images (a few minutes, once)"
            as_root "$bin" stack:build --image "$1"
            return
        fi
    done
}
