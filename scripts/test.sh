#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end tests against real PostgreSQL, NATS JetStream
# and an SMTP server on loopback. Starts what it needs first. The suite runs twice, once against
# each supported NATS server: a current one (scripts/nats-current.sh, 2.15) and Debian's (2.9).
# NATS_SERVERS=current (or debian) runs one of them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
apt_install() { # package why
  echo "test.sh: installing $1 ($2)" >&2
  local as_root=""; [ "$(id -u)" = 0 ] || as_root=sudo
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null ||
    { $as_root apt-get update -q >/dev/null && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null; }
}
command -v pdftotext >/dev/null 2>&1 && command -v pdffonts >/dev/null 2>&1 ||
  apt_install poppler-utils "pdftotext and pdffonts read the invoice PDFs back"
# The notifier's default fallback fonts (NOTIFIER_FALLBACK_FONTS): the tests print Japanese,
# Chinese and Korean names with them.
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] && [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc ] ||
  apt_install fonts-noto-cjk "Noto Sans CJK: the notifier's fonts for Japanese, Chinese and Korean names"
# The console's browser test (tests/e2e/console_browser.rs): Debian's headless Chromium and its
# WebDriver, and axe-core from npm at the version tests/browser/package-lock.json pins.
[ -x /usr/bin/chromium ] || apt_install chromium "headless Chromium for the console's browser test"
[ -x /usr/bin/chromedriver ] || apt_install chromium-driver "chromedriver drives that Chromium"
[ -f tests/browser/node_modules/axe-core/axe.min.js ] ||
  npm ci --prefix tests/browser --no-audit --no-fund >/dev/null
cargo nextest --version >/dev/null 2>&1 || cargo install cargo-nextest --locked

# The end-to-end tests drive billingctl as an operator would: build the binary first.
cargo build --locked -p billingctl
servers="${NATS_SERVERS:-current debian}"
for server in $servers; do
  case "$server" in
    current) url=$(scripts/nats-current.sh) ;;
    debian) url=nats://127.0.0.1:4222 ;;
    *) echo "test.sh: NATS_SERVERS names current and/or debian, not $server" >&2; exit 64 ;;
  esac
  echo "--- the suite against NATS $server ($url)" >&2
  TEST_NATS_URL="$url" cargo nextest run --workspace --no-fail-fast "$@"
done
