#!/bin/sh
# Make sure the current Debian cloud kernel package is in the cache
# (downloaded with apt-get download) and imported into hull's kernel
# store. Prints the .deb path on the last line.
set -eu
HULL=${HULL:-bin/hull}
CACHE=${HULL_CACHE:-.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd) # the path it prints is used from other directories
PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [ -z "$PKG" ]; then
	echo "kernel.sh: cannot resolve linux-image-cloud-amd64; run apt-get update" >&2
	exit 1
fi
DEB=$(ls "$CACHE"/"$PKG"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$DEB" ]; then
	echo "kernel.sh: downloading $PKG" >&2
	(cd "$CACHE" && apt-get download "$PKG" 2>&1 | grep -v 'unsandboxed' >&2 || true)
	DEB=$(ls "$CACHE"/"$PKG"_*.deb 2>/dev/null | head -n1 || true)
	[ -n "$DEB" ] || { echo "kernel.sh: apt-get download $PKG failed" >&2; exit 1; }
fi
REL=${PKG#linux-image-}
# Import unless a bundle of this release with every module this hull
# needs (erofs is the newest of them) is already there.
if ! "$HULL" kernel ls --json 2>/dev/null | tr -d ' \n' | grep -q "\"name\":\"debian-$REL\".*\"name\":\"erofs\""; then
	"$HULL" kernel import "$DEB" >&2
fi
echo "$DEB"
