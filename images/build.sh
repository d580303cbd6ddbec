#!/usr/bin/env bash
# Build Workgate's session images, each only when its sources changed. Each image builds on the
# one before it: base (images/base/build.sh) -> screen -> desktop, browser. An image is labelled
# io.workgate.source=<sha256 of its folder's files and of the source of the image it builds on>
# and tagged with that hash's first 16 digits; when that tag exists the build is skipped, and
# the moving tag (:latest, the base's :bookworm) is pointed at it again, in case another checkout
# moved it. Prints the exact name of each image asked for, one a line.
# Usage: images/build.sh [--rebuild] [desktop|browser|all]   (as root, after scripts/podman.sh;
#        --rebuild builds the chain afresh from Debian's archive, say for its updates)
set -euo pipefail

cd "$(dirname "$0")"
export CONTAINERS_CONF="$PWD/containers.conf"

fail() {
    echo "images/build.sh: $*" >&2
    exit 1
}

rebuild=false
if [ "${1:-}" = --rebuild ]; then
    rebuild=true
    shift
fi
case "${1:-all}" in
    desktop | browser) wanted=("$1") ;;
    all) wanted=(desktop browser) ;;
    *) fail "usage: images/build.sh [--rebuild] [desktop|browser|all]" ;;
esac

parent_of() {
    case "$1" in
        base) echo "" ;;
        screen) echo base ;;
        *) echo screen ;;
    esac
}

moving_tag_of() {
    case "$1" in
        base) echo bookworm ;;
        *) echo latest ;;
    esac
}

# Each image's folder is its sources: a Containerfile copies from its own folder only, but for
# screen/'s scripts, which the screen image holds for the images built on it.
declare -A source
for image in base screen desktop browser; do
    parent=$(parent_of "$image")
    source[$image]=$(
        {
            find "$image" -type f -printf '%m %p\n' | LC_ALL=C sort
            find "$image" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
            echo "${parent:+${source[$parent]}}"
        } | sha256sum | cut -c1-64
    )
done

tagged_of() {
    echo "localhost/workgate-$1:${source[$1]:0:16}"
}

build() {
    local image=$1 tagged start=$SECONDS
    tagged=$(tagged_of "$image")
    echo "Building $tagged ..." >&2
    if [ "$image" = base ]; then
        base/build.sh "${source[base]}" >&2
    else
        # --pull=never: everything comes from the base and Debian's archive, never a registry.
        podman build --quiet --pull=never --build-arg "BASE=$(tagged_of "$(parent_of "$image")")" \
            --label "io.workgate.source=${source[$image]}" --tag "$tagged" \
            --tag "localhost/workgate-$image:latest" --file "$image/Containerfile" . >&2 ||
            fail "building $tagged failed (its error is above)"
    fi
    echo "Built $tagged in $((SECONDS - start)) s" >&2
}

declare -A ensured
ensure() {
    local image=$1 parent tagged
    [ -n "${ensured[$image]:-}" ] && return
    tagged=$(tagged_of "$image")
    if $rebuild || ! podman image exists "$tagged"; then
        parent=$(parent_of "$image")
        if [ -n "$parent" ]; then
            ensure "$parent"
        fi
        build "$image"
    else
        podman tag "$tagged" "localhost/workgate-$image:$(moving_tag_of "$image")"
    fi
    ensured[$image]=$tagged
}

# One build at a time on the machine: two test runs starting together wait for one build.
exec 9>"${TMPDIR:-/tmp}/workgate-images.lock"
flock 9

for image in "${wanted[@]}"; do
    ensure "$image"
    echo "${ensured[$image]}"
done
