#!/usr/bin/env bash
# The release `relais inbox` under a migration wave on loopback: 64 actors with cached keys
# sending signed replies and likes (accepted/s, p50/p99 latency, each stored exactly once),
# then 2 000 new actors following at once (time until all got their Accept).
#
#   bench/inbox.sh              # 100 activities per actor, 2 000 new followers
#   bench/inbox.sh 200 4000     # other sizes
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --quiet --bench inbox -- "$@"
