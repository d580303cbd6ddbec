#!/usr/bin/env bash
# Install the Debian packages Workgate's desktops and browser tests use, when they are missing,
# and fail, naming what is missing, when they cannot be installed: `make test` stops here rather
# than run a suite whose desktop, browser and nginx tests cannot pass.
# Usage: scripts/system-deps.sh PACKAGE...   (installs with apt-get, as root)
set -euo pipefail

fail() {
    echo "scripts/system-deps.sh: $*" >&2
    exit 1
}

# The program a package must leave behind; a package without one (fonts) is asked of dpkg.
program_of() {
    case "$1" in
        xvfb) echo Xvfb ;;
        python3) echo /usr/bin/python3 ;; # the machine's own, not a virtualenv's
        fonts-*) echo "" ;;
        *) echo "$1" ;;
    esac
}

present() {
    local program
    program=$(program_of "$1")
    if [ -n "$program" ]; then
        # Debian puts nginx in /usr/sbin, which is not on everyone's PATH.
        PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1
    else
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
    fi
}

# "xvfb (Xvfb), nginx": the packages, each with its program when that is named otherwise.
described() {
    local pkg program list=""
    for pkg in "$@"; do
        list+="${list:+, }$pkg"
        program=$(program_of "$pkg")
        if [ -n "$program" ] && [ "$program" != "$pkg" ]; then
            list+=" ($program)"
        fi
    done
    echo "$list"
}

missing=()
for pkg in "$@"; do
    present "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command -v apt-get >/dev/null 2>&1 ||
    fail "missing $(described "${missing[@]}"), and there is no apt-get here to install them"
[ "$(id -u)" -eq 0 ] ||
    fail "missing $(described "${missing[@]}"), which only root can install: sudo $0 ${missing[*]}"

echo "Installing ${missing[*]} ..."
# Install, never start: a package's service (nginx on port 80, say) would outlive every test.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq || fail "apt-get update failed; missing $(described "${missing[@]}")"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fail "apt-get install ${missing[*]} failed (its error is above)"

still=()
for pkg in "${missing[@]}"; do
    present "$pkg" || still+=("$pkg")
done
[ ${#still[@]} -eq 0 ] ||
    fail "installed, yet still missing: $(described "${still[@]}")"
