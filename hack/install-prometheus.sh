#!/bin/sh
# Installs Debian's `prometheus` package when `promtool` or `prometheus` is missing: promtool
# checks and unit-tests the alerts (tests/install), the server runs in e2e/tests/monitoring.rs.
# The package's service is not started (a policy-rc.d refusing it is in place during the
# install) and is disabled afterwards, so nothing binds Prometheus' fixed port 9090.
# `make setup` and .ci/run call this; it needs root or sudo, and apt (Debian, Ubuntu).
set -eu
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: promtool and prometheus are needed (Prometheus 2.x on PATH); without apt-get, install them yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# hack/install-prometheus.sh: start no service while it installs.\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
promtool --version | head -n 1
