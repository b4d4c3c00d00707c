# Installs Debian's postgresql package when its binaries are missing: the
# tests and `bot demo --homeserver synapse` run their own private cluster
# (initdb + pg_ctl in a temporary directory, internal/pgproc) and only need
# the binaries.
# Source from the repository root.
need_postgres() {
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing Debian's postgresql package (binaries for a private cluster)"
    local sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
}
