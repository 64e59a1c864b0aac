#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what the tests need
# when it is missing (Debian packages), then runs `cargo test --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing $*; install it (as root: apt-get install -y $*)" >&2
    exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Build needs: a C compiler, make and perl (SQLCipher with vendored OpenSSL).
for tool in cc make perl; do
  command -v "$tool" >/dev/null 2>&1 || { apt_install build-essential perl; break; }
done
# The audit drain tests deliver to a real syslog collector.
command -v rsyslogd >/dev/null 2>&1 || apt_install rsyslog
# The PostgreSQL tests start a throwaway cluster (crates/wb-pgtest) with the
# system's initdb and pg_ctl; psql runs its setup SQL.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  apt_install postgresql
fi
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
# `workbooks bench --postgres` compares with pgbench (not needed by the tests).
if ! command -v pgbench >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  apt_install postgresql-contrib || true
fi
# The S3 tests (crates/wb-server/tests/alone/s3.rs) start a real S3-protocol server:
# moto, from PyPI.
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
if ! python3 -c 'import moto.server' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  # Debian's Python refuses pip installs outside a venv unless told otherwise.
  python3 -m pip install --quiet 'moto[server]' ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi

# The mail tests deliver to a real SMTP server: aiosmtpd, from PyPI.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  python3 -m pip install --quiet aiosmtpd ||
    python3 -m pip install --quiet --break-system-packages aiosmtpd
fi

# Customer exports are checked against the standard age tool
# (crates/workbooks/tests/commands/export.rs).
command -v age >/dev/null 2>&1 || apt_install age

# The web console's browser tests (console-tests/) drive the system Chromium
# with playwright-core and check pages with axe-core, from npm.
[ -n "${CHROMIUM:-}" ] || [ -x /usr/bin/chromium ] || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "scripts/test.sh: console-tests need Node.js 20 or later (playwright-core); found $(node --version)" >&2
  exit 1
fi
if [ ! -f console-tests/node_modules/.package-lock.json ] ||
  [ console-tests/package-lock.json -nt console-tests/node_modules/.package-lock.json ]; then
  (cd console-tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

cargo test --workspace "$@"
