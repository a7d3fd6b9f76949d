#!/usr/bin/env bash
# Times `relais publish` (release) delivering one post to 100 000 followers on 10 000 fake
# servers on loopback; prints wall time, requests per second and peak RSS.
#
#   bench/delivery.sh              # 100 000 followers, 10 000 servers
#   bench/delivery.sh 20000 2000   # other sizes
#   LARGE=1 bench/delivery.sh      # 1 000 000 followers on 100 000 servers
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${LARGE:-}" = 1 ] && [ $# -eq 0 ]; then
    set -- 1000000 100000
fi
cargo bench --quiet --bench delivery -- "$@"
