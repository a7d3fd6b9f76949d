#!/usr/bin/env bash
# Mounts a journaled ext4 (a file on the current disk, loop-mounted) at DIR for the build
# benchmarks, as root. This project's VMs mount their disk as ext4 without a journal, where
# the kernel avoids reusing recently deleted inodes and each cold build after another gets
# slower (see bench/build.sh); a writer's laptop or server has a journal.
#
#   sudo bench/scratch-fs.sh /mnt/bench [SIZE]     # then: BENCH_DIR=/mnt/bench bench/build.sh
#   sudo umount /mnt/bench && sudo losetup -D       # when done; the image stays for next time
set -euo pipefail
dir=${1:?usage: bench/scratch-fs.sh DIR [SIZE]}
size=${2:-8G}
image="$(cd "$(dirname "$0")/.." && pwd)/target/bench-fs.img"
if mountpoint -q "$dir"; then
    echo "$dir is mounted already" >&2
    exit 0
fi
mkdir -p "$dir" "$(dirname "$image")"
if [ ! -e "$image" ]; then
    truncate -s "$size" "$image"
    # The journal mke2fs gives a disk of 128 GB or more (1 GiB; an 8 GB image would get
    # 64 MiB, and a cold build of 10k posts would wait for its checkpoints).
    mkfs.ext4 -q -F -J size=1024 "$image"
fi
# Direct I/O: the image's blocks are not cached a second time in the host file system's
# page cache, whose writeback would otherwise run during the next timed build.
device=$(losetup --find --show --direct-io=on "$image")
mount "$device" "$dir"
echo "journaled ext4 on $dir ($(df -h --output=size "$dir" | tail -1 | tr -d ' ')); run: BENCH_DIR=$dir bench/build.sh" >&2
