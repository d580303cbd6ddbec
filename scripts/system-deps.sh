#!/usr/bin/env bash
# Install the Debian packages Workgate's desktops and browser tests use, when they are missing.
# Usage: scripts/system-deps.sh PACKAGE...   (only installs as root on a Debian/Ubuntu machine)
set -euo pipefail

missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing Debian packages: ${missing[*]} (install them with apt-get as root)" >&2
    exit 0
fi
echo "Installing ${missing[*]} ..."
# Install, never start: a package's service (nginx on port 80, say) would outlive every test.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
