#!/usr/bin/env bash
# Installs what ownstream's tests and demo need beyond the Rust toolchain, on Debian:
#   - make and a C compiler (gcc), if absent: the build compiles jemalloc (and ring) from C,
#   - ffmpeg (the end-to-end tests decode every receiver's output with it),
#   - chromium (the browser tests drive Debian's Chromium with Playwright),
#   - firefox-esr (the browser tests drive Debian's Firefox ESR with puppeteer-core over WebDriver BiDi),
#   - redis-server (the `--cluster` test starts its own on a free loopback port; no service),
#   - coturn (the TURN browser test starts its own `turnserver` on a free loopback port; no service),
#   - fonts-dejavu-core (the experiments' charts draw their text with it),
#   - node and npm if absent (Debian's nodejs), then the npm packages of package.json (playwright-core,
#     puppeteer-core).
# Safe to run again: does nothing when everything is there. Needs root or sudo only to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v make >/dev/null 2>&1 || need+=(make)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/turnserver ] || need+=(coturn)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# playwright-core and puppeteer-core only: they drive the system's Chromium and Firefox and never
# download a browser.
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/puppeteer-core/package.json ] \
    || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "prerequisites present: $(ffmpeg -version | head -n1 | cut -d' ' -f1-3), $(/usr/bin/chromium --version 2>/dev/null), $(/usr/bin/firefox-esr --version 2>/dev/null), node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"
