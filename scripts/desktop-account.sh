#!/usr/bin/env bash
# Make the account local desktops run as, when it is missing: a system account that cannot sign
# in, with subordinate uids and gids of its own (/etc/subuid, /etc/subgid), one per desktop.
# Usage: scripts/desktop-account.sh [NAME]   (NAME: WORKGATE_LOCAL_DESKTOP_USER, workgate-desktop)
set -euo pipefail

name="${1:-${WORKGATE_LOCAL_DESKTOP_USER:-workgate-desktop}}"
count=65536

if [ "$(id -u)" -ne 0 ]; then
    if ! id "$name" >/dev/null 2>&1; then
        echo "Local desktops need the account $name: run scripts/desktop-account.sh as root" >&2
    fi
    exit 0
fi

if ! id "$name" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$name"
fi

# A range after every range already given out in either file (podman's rootless users take
# theirs there too), so no two accounts share an id.
touch /etc/subuid /etc/subgid
start=$(awk -F: 'BEGIN { end = 1000000 } { if ($2 + $3 > end) end = $2 + $3 } END { print end }' \
    /etc/subuid /etc/subgid)
for file in /etc/subuid /etc/subgid; do
    if ! grep -q -E "^($name|$(id -u "$name")):" "$file"; then
        echo "$name:$start:$count" >> "$file"
    fi
done
