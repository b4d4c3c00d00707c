# Installs Synapse from Debian unstable's matrix-synapse package into a
# chroot under the cache (debootstrap, as root: about 5 minutes and 740 MB,
# once per version) and exports FERRY_SYNAPSE_CHROOT. Unstable moves on: the
# chroot is kept under the version it holds, and a version other than the
# one Ferry supports fails with a message naming both.
# Source from the repository root.
ferry_synapse_version=1.160.0
ferry_synapse_schema=94

build_synapse() {
  local cache="${FERRY_CACHE:-$HOME/.cache/ferry}"
  local dir="$cache/synapse-$ferry_synapse_version"
  if [ ! -x "$dir/usr/bin/python3" ] || [ ! -f "$dir/.ferry-ready" ]; then
    local sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
    if ! command -v debootstrap >/dev/null 2>&1; then
      echo "installing Debian's debootstrap (for the Synapse chroot)"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
    fi
    # The mirror this machine's apt sources name.
    local mirror
    # (A machine may lack some of these files: grep's status is not the
    # answer, its output is.)
    mirror="$({ grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
      grep -oE 'https?://[^ ]*/debian/?( |$)' | tr -d ' ' | head -1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    local tmp="$cache/synapse-chroot.tmp"
    echo "installing Synapse (Debian unstable's matrix-synapse) into a chroot under $cache (once, about 5 minutes)"
    $sudo rm -rf "$tmp"
    mkdir -p "$cache"
    if ! $sudo debootstrap --variant=minbase --include=matrix-synapse,python3-cffi-backend sid "$tmp" "$mirror" >"$cache/synapse-debootstrap.log" 2>&1; then
      tail -20 "$cache/synapse-debootstrap.log"
      echo "debootstrap of Debian unstable with matrix-synapse failed (log: $cache/synapse-debootstrap.log)"
      return 1
    fi
    local got
    got="$($sudo chroot "$tmp" dpkg-query -W -f '${Version}' matrix-synapse | sed 's/-[^-]*$//')"
    if [ "$got" != "$ferry_synapse_version" ]; then
      echo "Debian unstable now ships Synapse $got; Ferry supports Synapse $ferry_synapse_version (schema $ferry_synapse_schema)."
      echo "Check Ferry's Synapse code against $got's schema, then update ferry_synapse_version in scripts/lib/synapse.sh."
      $sudo rm -rf "$cache/synapse-$got"
      $sudo mv "$tmp" "$cache/synapse-$got"
      return 1
    fi
    $sudo touch "$tmp/.ferry-ready"
    $sudo rm -rf "$dir"
    $sudo mv "$tmp" "$dir"
  fi
  export FERRY_SYNAPSE_CHROOT="$dir" FERRY_SYNAPSE_VERSION="$ferry_synapse_version" FERRY_SYNAPSE_SCHEMA="$ferry_synapse_schema"
}
