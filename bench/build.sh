#!/usr/bin/env bash
# Times `relais build` (release binary) on synthetic blogs of realistic posts:
# a cold build, a rebuild with nothing changed, and a rebuild after editing one post.
#
#   bench/build.sh            # 1000 and 10000 posts
#   bench/build.sh 500 2000   # other sizes
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then
    sizes=(1000 10000)
fi

cargo build --release --quiet
relais="$PWD/target/release/relais"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints the wall time of a command in milliseconds; its output goes to $work/last.log.
time_ms() {
    local start end
    start=$(date +%s%N)
    "$@" >"$work/last.log" 2>&1
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

generate() {
    python3 bench/generate.py "$1" "$2"
}

printf '%-8s %10s %12s %12s %12s\n' posts "cold ms" "no-change ms" "one-file ms" "public MB"
for n in "${sizes[@]}"; do
    site="$work/site-$n"
    generate "$site" "$n"
    cold=$(time_ms "$relais" build --site "$site")
    again=$(time_ms "$relais" build --site "$site")
    grep -q "(0 files written, 0 removed)" "$work/last.log" || {
        echo "unexpected writes on a no-change rebuild:" >&2
        cat "$work/last.log" >&2
        exit 1
    }
    echo "Edited paragraph." >>"$site/content/posts/post-00007.md"
    one=$(time_ms "$relais" build --site "$site")
    size=$(du -sm "$site/public" | cut -f1)
    printf '%-8s %10s %12s %12s %12s\n' "$n" "$cold" "$again" "$one" "$size"
    rm -rf "$site"
done
