#!/bin/bash
# The least time this machine's disk needs for a restore's I/O alone: every pack file of a coldvault
# repository read with direct 4 MiB reads and SIZE_MIB (default 1024) written with direct 4 MiB writes,
# two streams of each, all at once, as a restore reads packs and writes large files around the page
# cache.  No decryption, no decompression, no files created: a restore can only be slower.
#
#     bench/io_floor.sh REPOSITORY_DIR [SIZE_MIB]
set -euo pipefail
repo=${1:?usage: bench/io_floor.sh REPOSITORY_DIR [SIZE_MIB]}
size_mib=${2:-1024}
[ -d "$repo/data" ] || { echo "io_floor.sh: $repo/data is not there: give a coldvault repository's directory" >&2; exit 2; }
scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/io-floor.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
find "$repo/data" -type f > "$scratch/packs"
split -n l/2 "$scratch/packs" "$scratch/half."
pack_bytes=$(xargs -a "$scratch/packs" du -cb | tail -1 | cut -f1)
sync
started=$(date +%s.%N)
for half in "$scratch"/half.*; do
    (while read -r pack; do dd if="$pack" of=/dev/null bs=4M iflag=direct status=none; done < "$half") &
done
for stream in 1 2; do
    dd if=/dev/zero of="$scratch/written.$stream" bs=4M count=$((size_mib / 8)) oflag=direct status=none &
done
wait
ended=$(date +%s.%N)
awk -v s="$started" -v e="$ended" -v r=$((pack_bytes / 1048576)) -v w="$size_mib" \
    'BEGIN { printf "read %d MiB of packs and wrote %d MiB, direct, two streams each: %.2f s\n", r, w, e - s }'
