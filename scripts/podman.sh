#!/usr/bin/env bash
# Install Podman and what Workgate's session images are built and run with, when missing, and
# check that podman runs with Workgate's configuration (images/containers.conf). Idempotent:
# nothing is installed when everything is there.
# Usage: scripts/podman.sh   (as root: installs with apt-get through scripts/system-deps.sh)
set -euo pipefail

cd "$(dirname "$0")/.."

fail() {
    echo "scripts/podman.sh: $*" >&2
    exit 1
}

# runc: crun, podman's default, refuses this kernel's cgroups (images/containers.conf);
# netavark and aardvark-dns: the network backend; catatonit: podman's --init; iptables: the
# networks' rules; mmdebstrap: the base image's root (images/base/build.sh).
scripts/system-deps.sh podman runc iptables catatonit mmdebstrap
# netavark and aardvark-dns are programs in /usr/lib/podman, off PATH, where system-deps.sh
# looks for what a package leaves behind.
PATH="$PATH:/usr/lib/podman" scripts/system-deps.sh netavark aardvark-dns

export CONTAINERS_CONF="$PWD/images/containers.conf"
podman --version >/dev/null || fail "podman does not run with $CONTAINERS_CONF (its error is above)"
# podman passes over keys it does not know: check that the ones that matter took.
expected="runc netavark cgroupfs file"
got=$(podman info --format \
    '{{.Host.OCIRuntime.Name}} {{.Host.NetworkBackend}} {{.Host.CgroupManager}} {{.Host.EventLogger}}') ||
    fail "podman cannot read $CONTAINERS_CONF (its error is above)"
[ "$got" = "$expected" ] ||
    fail "podman runs with '$got' (runtime, network, cgroups, events), not '$expected'"
