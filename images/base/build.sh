#!/usr/bin/env bash
# Build localhost/workgate-base:bookworm, the root the session images start FROM: a minbase
# Debian 12 made by mmdebstrap from the mirror this machine's apt uses, imported into podman.
# Nothing comes from a container registry.
# Usage: images/base/build.sh [SOURCE]   (as root; images/build.sh calls it with SOURCE, the hash
#        of this folder, which becomes the label io.workgate.source and the tag :SOURCE[0:16])
set -euo pipefail

NAME=localhost/workgate-base
source_hash=${1:-}
CONTAINERS_CONF="$(cd "$(dirname "$0")/.." && pwd)/containers.conf"
export CONTAINERS_CONF

fail() {
    echo "images/base/build.sh: $*" >&2
    exit 1
}

command -v mmdebstrap >/dev/null || fail "mmdebstrap is missing: run scripts/podman.sh"

# The host's Debian 12 sources (main, updates, security), as apt itself resolved them from
# sources.list and sources.list.d: the image's apt must reach the same mirror, since builds and
# the machine reach no other. Other vendors' sources (with keys the image lacks) are left out.
# shellcheck disable=SC2016 # $(...) is apt's format, not the shell's
sources=$(apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
    'Identifier: Packages' |
    awk '$2 ~ /^bookworm(-updates|-security)?$/ { print "deb " $1 " " $2 " " $3 }' | sort -u)
[ -n "$sources" ] || fail "this machine's apt has no source for bookworm; cannot build the base"

work=$(mktemp -d /var/tmp/workgate-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Kept in the image (dpkg.cfg.d, apt.conf.d), so every image built on it stays small too: no
# recommended packages, no manuals, documentation (bar the copyright files) or translations.
# The root is made merged-/usr already, which usr-is-merged asserts; usrmerge, which mmdebstrap
# installs to convert a root that is not, and the perl it brings (50 MB) go again.
usrmerge="usrmerge perl perl-modules-5.36 libperl5.36 libfile-find-rule-perl \
libnumber-compare-perl libtext-glob-perl"
echo "$sources" | mmdebstrap --variant=minbase --quiet --include=usr-is-merged \
    --customize-hook="chroot \"\$1\" apt-get purge --yes --quiet=2 $usrmerge >/dev/null" \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='APT::Install-Suggests "false"' \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$work/root.tar" - ||
    fail "mmdebstrap failed (its error is above)"

changes=(--change 'CMD ["/bin/bash"]')
tags=("$NAME:bookworm")
if [ -n "$source_hash" ]; then
    changes+=(--change "LABEL io.workgate.source=$source_hash")
    tags+=("$NAME:${source_hash:0:16}")
fi
podman import --quiet "${changes[@]}" "$work/root.tar" "${tags[0]}" >/dev/null ||
    fail "podman import failed (its error is above)"
for tag in "${tags[@]:1}"; do
    podman tag "${tags[0]}" "$tag"
done
