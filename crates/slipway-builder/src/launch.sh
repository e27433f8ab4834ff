cd "${SLIPWAY_APP_DIR:-/app}" || exit 1
for profile in /app/.profile.d/*.sh; do
  if [ -r "$profile" ]; then
    # shellcheck source=/dev/null
    . "$profile"
  fi
done
eval "exec $1"
