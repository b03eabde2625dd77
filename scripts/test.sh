#!/usr/bin/env bash
# Installs everything the tests need (system peers and npm packages), builds, and runs every test.
# Used as-is by the README and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || need+=(qemu-utils)
/usr/bin/python3 -c 'import pyvhdi' 2>/dev/null || need+=(python3-libvhdi)
command -v vhdiinfo >/dev/null || need+=(libvhdi-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
command -v strace >/dev/null || need+=(strace)
command -v tmux >/dev/null || need+=(tmux)
# The inspector page's end-to-end test drives Debian's Chromium (playwright-core, no browser download).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The native helper (fallocate, copy_file_range) is built by node-gyp at `npm ci`; its test requires it.
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
npm test
