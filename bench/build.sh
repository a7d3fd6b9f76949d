#!/usr/bin/env bash
# Side-by-side build benchmark: relais, Hugo (installed from the system packages when
# missing) and Zola (only when a `zola` binary is on PATH), on one generated corpus
# (bench/generate.py, converted by bench/other_ssg.py), each with a minimal theme.
#
# For each tool and size: a cold build (no output, no cache), a no-change rebuild and a
# rebuild after appending a paragraph to one post; wall time, CPU time (user + system,
# steadier than wall on a shared machine) and peak RSS from /usr/bin/time, the median of
# RUNS runs (tools alternated within a run, each run starting with the next tool). Prints
# one markdown table.
#
#   bench/build.sh            # 1000 and 10000 posts, RUNS=3
#   RUNS=5 bench/build.sh 1000
#   BENCH_DIR=/mnt/bench bench/build.sh   # corpora and outputs on another file system
#   TOOLS="relais zola" bench/build.sh     # some of the tools only
#
# Where the corpora live matters: on an ext4 mounted without a journal (this project's VMs),
# the kernel will not reuse an inode within minutes of its deletion, so every cold build
# after a deleted one scans further for free inodes and all three tools slow down run after
# run (relais at 1k went 0.5 s -> 1.8 s, most of it system time in ext4_create's search
# for a free inode). The script warns
# then; bench/scratch-fs.sh mounts a journaled ext4, as a writer's disk is, to run on.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then
    sizes=(1000 10000)
fi
runs=${RUNS:-3}

if [ -n "${TOOLS:-}" ]; then
    read -r -a tools <<<"$TOOLS"
else
    tools=(relais hugo)
    if command -v zola >/dev/null; then
        tools+=(zola)
    fi
fi
[ "${tools[0]}" = relais ] || { echo "TOOLS must start with relais (the ratios are to it)" >&2; exit 1; }
if [[ " ${tools[*]} " == *" hugo "* ]] && ! command -v hugo >/dev/null; then
    echo "installing hugo from the system packages" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get install -y hugo >&2
fi
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

cargo build --release --quiet
relais="$PWD/target/release/relais"
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/relais-bench.XXXXXX")
# A journaled ext4 shows up in /proc/fs/jbd2 as DEVICE-N.
fs_dev=$(basename "$(df --output=source "$work" | tail -1)")
if [ "$(findmnt -no FSTYPE --target "$work")" = ext4 ] && ! ls /proc/fs/jbd2/"$fs_dev"-* >/dev/null 2>&1; then
    echo "warning: $work is on an ext4 without a journal: cold builds slow down run after run; see bench/scratch-fs.sh" >&2
fi
trap 'rm -rf "$work"' EXIT

# Runs a command in a directory; prints "seconds KiB cpu-seconds" (wall, peak RSS, user+sys).
measure() {
    local dir=$1
    shift
    # Write back what earlier runs (of any tool) left dirty, and let removed files go: on
    # this VM's ext4 a cold build right after another tool's was paying for its writeback.
    sync
    (cd "$dir" && /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >"$work/last.log" 2>&1) || {
        echo "failed in $dir: $*" >&2
        cat "$work/last.log" >&2
        exit 1
    }
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$work/time"
}

build_cmd() {
    case $1 in
    relais) echo "$relais build --site ." ;;
    hugo) echo "hugo --quiet" ;;
    zola) echo "zola build" ;;
    esac
}

clean() {
    case $1 in
    relais) rm -rf "$2/public" "$2/.relais" ;;
    hugo) rm -rf "$2/public" "$2/resources" "$2/.hugo_build.lock" ;;
    zola) rm -rf "$2/public" ;;
    esac
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "| posts | tool | cold (s) | cold CPU (s) | no-change (s) | one edit (s) | edit CPU (s) | peak RSS cold (MiB) | cold vs relais | edit vs relais |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
    base="$work/base-$n"
    python3 bench/generate.py "$base" "$n"
    declare -A dirs=()
    for tool in "${tools[@]}"; do
        dirs[$tool]="$work/$tool-$n"
        case $tool in
        relais) cp -r "$base" "${dirs[$tool]}" ;;
        *) python3 bench/other_ssg.py "$base" "${dirs[$tool]}" "$tool" ;;
        esac
        : >"$work/$tool-cold" >"$work/$tool-again" >"$work/$tool-edit" >"$work/$tool-rss"
        : >"$work/$tool-coldcpu" >"$work/$tool-editcpu"
    done
    for run in $(seq "$runs"); do
        # Each run starts with another tool: a cold build right after another tool's runs
        # measured up to a quarter slower than one after its own (kernel writeback, caches).
        order=("${tools[@]:run % ${#tools[@]}}" "${tools[@]:0:run % ${#tools[@]}}")
        for tool in "${order[@]}"; do
            dir=${dirs[$tool]}
            cmd=$(build_cmd "$tool")
            clean "$tool" "$dir"
            read -r secs kib cpu <<<"$(measure "$dir" $cmd)"
            echo "$secs" >>"$work/$tool-cold"
            echo "$kib" >>"$work/$tool-rss"
            echo "$cpu" >>"$work/$tool-coldcpu"
            read -r secs _ <<<"$(measure "$dir" $cmd)"
            echo "$secs" >>"$work/$tool-again"
            if [ "$tool" = relais ] && ! grep -q "(0 files written, 0 removed)" "$work/last.log"; then
                echo "relais wrote files on a no-change rebuild:" >&2
                cat "$work/last.log" >&2
                exit 1
            fi
            printf '\nEdited paragraph %s.\n' "$run" >>"$dir/content/posts/post-00007.md"
            read -r secs _ cpu <<<"$(measure "$dir" $cmd)"
            echo "$secs" >>"$work/$tool-edit"
            echo "$cpu" >>"$work/$tool-editcpu"
        done
    done
    r_cold=$(median <"$work/relais-cold")
    r_edit=$(median <"$work/relais-edit")
    for tool in "${tools[@]}"; do
        cold=$(median <"$work/$tool-cold")
        again=$(median <"$work/$tool-again")
        edit=$(median <"$work/$tool-edit")
        rss=$(median <"$work/$tool-rss")
        ccpu=$(median <"$work/$tool-coldcpu")
        ecpu=$(median <"$work/$tool-editcpu")
        awk -v n="$n" -v t="$tool" -v c="$cold" -v a="$again" -v e="$edit" -v m="$rss" \
            -v cc="$ccpu" -v ec="$ecpu" -v rc="$r_cold" -v re="$r_edit" 'BEGIN {
                printf "| %d | %s | %.2f | %.2f | %.3f | %.3f | %.2f | %.0f | %.2f× | %.1f× |\n",
                    n, t, c, cc, a, e, ec, m / 1024, c / rc, e / re }'
    done
    for tool in "${tools[@]}"; do rm -rf "${dirs[$tool]}"; done
    rm -rf "$base"
    unset dirs
done
echo
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $runs runs, medians."
