#!/bin/sh
# Install the peers the issue names, restic 0.18 and borg 1.4, into bench/peers/ for bench/run.py,
# which puts bench/peers/bin first on its PATH.  Debian 12 ships only restic 0.14 and borg 1.2.
#
# - restic: the binary of Debian 13 (trixie), taken from its pool; it is a static Go program
#   that needs only libc, so it runs on Debian 12.  Its file name is looked up in trixie's index.
# - borg: built from its PyPI source into a venv of its own, against Debian 12's libraries
#   (the -dev packages below; run as root, or install them first).
#
# Nothing here is needed by `make test` or `make demo`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
peers="$here/peers"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
restic_suite="${RESTIC_SUITE:-trixie}"
borg_version="${BORG_VERSION:-1.4.*}"
arch=$(dpkg --print-architecture)  # amd64, arm64, ...: trixie's index is per architecture

mkdir -p "$peers/bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "restic: looking it up in Debian $restic_suite"
curl -fsS -o "$work/Packages.xz" "$mirror/dists/$restic_suite/main/binary-$arch/Packages.xz"
deb=$(xz -dc "$work/Packages.xz" | awk '/^Package: restic$/ { found = 1 } found && /^Filename:/ { print $2; exit }')
if [ -z "$deb" ]; then
    echo "restic is not in Debian $restic_suite's $arch index; set RESTIC_SUITE" >&2
    exit 1
fi
curl -fsS -o "$work/restic.deb" "$mirror/$deb"
dpkg-deb -x "$work/restic.deb" "$work/restic"
install -m 0755 "$work/restic/usr/bin/restic" "$peers/bin/restic"
"$peers/bin/restic" version

echo "borg: building $borg_version from PyPI"
if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q libacl1-dev liblz4-dev libzstd-dev libxxhash-dev libssl-dev pkg-config >/dev/null
fi
python3 -m venv "$peers/borg-venv"
"$peers/borg-venv/bin/pip" install -q "borgbackup==$borg_version"
ln -sf "$peers/borg-venv/bin/borg" "$peers/bin/borg"
"$peers/bin/borg" --version
