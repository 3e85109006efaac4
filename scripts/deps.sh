#!/bin/sh
# Install the Debian packages hull's build, demo and tests use, when any
# is missing. Needs root (or sudo) only when something must be installed.
set -eu
PKGS="qemu-system-x86 gcc curl redis-server redis-tools nginx python3 cpio ca-certificates iproute2"
# The tuned kernel's source and build tools (hull kernel build installs
# them itself when missing; listing them here keeps make test's first
# run from stopping halfway for apt).
PKGS="$PKGS linux-source-6.1 build-essential bc bison flex libelf-dev patch xz-utils"
missing=""
for p in $PKGS; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps.sh: installing$missing"
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
