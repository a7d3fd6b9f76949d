#!/usr/bin/env bash
# The release `relais inbox` on a PostgreSQL store, as 1 and then 3 processes sharing it:
# bench/inbox.rs's migration wave (signed replies and likes, then new followers at once),
# each request sent to the next process in turn. Prints accepted/s for each. Starts a
# throwaway PostgreSQL cluster on 127.0.0.1 (Debian's postgresql package) and removes it.
#
#   bench/replicas.sh                 # 100 activities per actor, 2 000 new followers
#   bench/replicas.sh 200 20000       # other sizes
#   RUNS=3 bench/replicas.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1}
bin=$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")")
dir=$(mktemp -d)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/initdb" -A trust -U postgres -E UTF8 --no-locale -D "$dir/data" >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
stop() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT
out=$(mktemp)
for replicas in 1 3; do
  for run in $(seq "$runs"); do
    db="relais_bench_${replicas}_$run"
    psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE $db" postgres
    RELAIS_BENCH_STORE_URL="postgresql://postgres@127.0.0.1:$port/$db" \
      RELAIS_BENCH_REPLICAS=$replicas cargo bench --quiet --bench inbox -- "$@" | tee -a "$out"
  done
done
grep -E '^(store|cached keys|new followers)' "$out"
