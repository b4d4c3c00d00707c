# Installs Debian's chromium package when it is missing: the dashboard's
# browser tests (cmd/bot TestDashboardBrowser) drive it headless through
# chromedp. Its version is logged by the test (security updates change it).
# Source from the repository root.
need_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium package (the dashboard's browser tests)"
    local sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  export FERRY_CHROMIUM="$(command -v chromium)"
}
