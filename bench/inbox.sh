#!/usr/bin/env bash
# The release `relais inbox` under a migration wave on loopback: 64 actors with cached keys
# sending signed replies and likes (accepted/s, p50/p99 latency, each stored exactly once),
# then 2 000 new actors following at once (time until all got their Accept). Runs RUNS
# times (default 5) and prints the medians: the machine is shared, single runs are noisy.
#
#   bench/inbox.sh              # 100 activities per actor, 2 000 new followers
#   bench/inbox.sh 200 4000     # other sizes
#   RUNS=1 bench/inbox.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$runs"); do
    cargo bench --quiet --bench inbox -- "$@" | tee -a "$out"
done
median() {
    sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
# The number after `$1` on each run's line.
after() {
    sed -n "s/.*$1 \([0-9.]*\).*/\1/p" "$out" | median
}
echo "medians of $runs runs: $(sed -n 's/.* \([0-9]*\) accepted\/s.*/\1/p' "$out" | median) accepted/s," \
    "p50 $(after p50) ms, p99 $(after p99) ms; all Accepts within $(after 'all within') s"
