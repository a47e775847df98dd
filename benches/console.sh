#!/usr/bin/env bash
# Console bench: fills a call log with CALLS calls (default 100,000, over 30 days: rows,
# timeline events, SIP messages of both legs, a location for every third, a 60 s stereo
# recording), starts the gateway on it, and times each console page (median, p90, max of
# REPEAT requests; target < 100 ms). Release build. Usage:
#   benches/console.sh            CALLS=100000 REPEAT=20 WORK=/tmp/siaga-console-bench
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
CALLS="${CALLS:-100000}"
REPEAT="${REPEAT:-20}"
WORK="${WORK:-/tmp/siaga-console-bench}"
SIAGA="$HERE/target/release/siaga"
cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
rm -rf "$WORK" && mkdir -p "$WORK/recordings"
DB="$WORK/siaga.db"
# The accounts first: this creates the database with the gateway's schema.
echo "bench-supervisor-pw" | "$SIAGA" users add bench --role supervisor --db "$DB" --dialplan "$HERE/dialplans/default.toml"
echo "bench-agency-pw" | "$SIAGA" users add benchpol --role agency --route police --db "$DB" --dialplan "$HERE/dialplans/default.toml"
python3 "$HERE/benches/console_bench.py" fill "$DB" "$WORK/recordings" "$CALLS"
PORT="${PORT:-18119}"
"$SIAGA" serve --listen udp:127.0.0.1:0 --listen tcp:127.0.0.1:0 --db "$DB" \
  --recordings "$WORK/recordings" --dialplan "$HERE/dialplans/default.toml" \
  --http "127.0.0.1:$PORT" >"$WORK/out.log" 2>"$WORK/err.log" &
GW=$!
trap 'kill $GW 2>/dev/null; wait $GW 2>/dev/null' EXIT
for _ in $(seq 100); do grep -q "listening http" "$WORK/out.log" && break; sleep 0.1; done
python3 "$HERE/benches/console_bench.py" time "http://127.0.0.1:$PORT" bench bench-supervisor-pw benchpol bench-agency-pw "$REPEAT"
