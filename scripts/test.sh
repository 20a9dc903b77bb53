#!/usr/bin/env bash
# The whole test suite, set-up included: what a newcomer runs and what CI runs.
# Installs the system packages the tests need when they are missing (Debian, as root or
# through sudo), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, as "command-or-file:package" pairs.
needs=(
  "weechat-headless:weechat-headless"                            # a real IRC client
  "/usr/lib/x86_64-linux-gnu/weechat/plugins/fifo.so:weechat-plugins" # drives it
  "chromium:chromium"                                            # the browser page's tests
  "node:nodejs"
  "npm:npm"
  "redis-server:redis-server"                                    # the cluster tests' backplane
  "redis-cli:redis-tools"
  "make:make"                                                    # builds jemalloc (natter-server)
  "cc:gcc"
)

missing=()
for pair in "${needs[@]}"; do
  what=${pair%%:*} pkg=${pair#*:}
  case $what in
    /*) [ -e "$what" ] || missing+=("$pkg") ;;
    *) command -v "$what" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
# The store's tests start throwaway PostgreSQL servers with initdb and pg_ctl, which Debian
# keeps under /usr/lib/postgresql/VERSION/bin.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Tests open thousands of loopback sockets in one process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --workspace --locked "$@"

# The browser client, end to end in headless Chromium, against the server binary the
# cargo tests just built.
(cd web-tests && npm ci --no-audit --no-fund --loglevel=error && npm test)
