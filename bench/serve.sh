#!/usr/bin/env bash
# `relais serve` edit loop: on a generated corpus, a saved edit to one post until the
# live-reload event reaches a browser-like client (curl on the server-sent events stream,
# each event stamped on arrival). Prints, as the median of RUNS edits: the rebuild as serve
# reports it (the build with the index kept in memory) and the wall time from the write to
# the event, which adds the file watcher's delay and serve's settling time (an editor's
# save is several events: 1 ms once a file edited in place is closed, else 5 ms).
#
#   bench/serve.sh            # 10000 posts, RUNS=9
#   RUNS=5 bench/serve.sh 1000
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-10000}
runs=${RUNS:-9}

cargo build --release --quiet
relais="$PWD/target/release/relais"
work=$(mktemp -d)
log="$work/serve.log"
pid=""
listener=""
cleanup() {
    if [ -n "$listener" ]; then kill "$listener" 2>/dev/null || true; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

python3 bench/generate.py "$work/site" "$n"
: >"$log"
"$relais" serve --site "$work/site" --port 0 >"$log" 2>&1 &
pid=$!

# Waits until the log has more than $1 "Built" lines; prints the newest one.
wait_built() {
    local want=$1 deadline=$((SECONDS + 600))
    while [ "$(grep -c '^Built' "$log" || true)" -le "$want" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "relais serve stopped:" >&2
            cat "$log" >&2
            exit 1
        fi
        if [ $SECONDS -gt $deadline ]; then
            echo "no rebuild within 600 s" >&2
            exit 1
        fi
        sleep 0.002
    done
    grep '^Built' "$log" | tail -n 1
}

wait_built 0 >/dev/null
port=$(sed -nE 's|^Serving .* at http://127\.0\.0\.1:([0-9]+)/.*|\1|p' "$log" | head -n 1)
[ -n "$port" ] || { echo "no port in the serve log" >&2; cat "$log" >&2; exit 1; }
events="$work/events"
: >"$events"
# The reload events as a browser gets them, each stamped when it arrives.
curl -sN "http://127.0.0.1:$port/__relais/livereload" | while IFS= read -r line; do
    case $line in data:*) echo "$EPOCHREALTIME" >>"$events" ;; esac
done &
listener=$!
# The watcher starts after the first build; give it (and the listener) a moment.
sleep 1
post=$(find "$work/site/content/posts" -name '*.md' | sort | sed -n 8p)
builds=()
walls=()
for i in $(seq 1 "$runs"); do
    before=$(grep -c '^Built' "$log" || true)
    seen=$(wc -l <"$events")
    start=$EPOCHREALTIME
    printf '\nAnother paragraph, edit %s.\n' "$i" >>"$post"
    line=$(wait_built "$before")
    while [ "$(wc -l <"$events")" -le "$seen" ]; do sleep 0.002; done
    end=$(sed -n "$((seen + 1))p" "$events")
    builds+=("$(sed -E 's/.* in ([0-9]+) ms.*/\1/' <<<"$line")")
    walls+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", (e - s) * 1000 }')")
    sleep 0.5
done

median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
echo "relais serve, $n posts, $runs edits of one post (load $(cut -d' ' -f1 /proc/loadavg)):"
echo "  rebuild as reported: median $(median "${builds[@]}") ms (all: ${builds[*]})"
echo "  write -> reload event at the client: median $(median "${walls[@]}") ms, of which 1 ms settling (all: ${walls[*]})"
