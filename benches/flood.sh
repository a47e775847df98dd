#!/usr/bin/env bash
# Flood benchmark: legitimate 112 callers at 10 calls/s, answered and bridged to a SIPp agency,
# while 1–20 hostile sources flood the gateway with garbage datagrams, OPTIONS and INVITEs to a
# number no dialplan has, as fast as the flood generator goes. First the same run without the
# flood (the baseline), then one run per source count. Reports, per run: the share of the
# legitimate calls the agency answered (bridged), their INVITE→200 time as the caller saw it
# (p50/p90/p99), the call log's growth (MB per minute of flood: the database after the run,
# its WAL checkpointed, against the start; and the part of it from non-call traffic), records
# the gateway lost, its peak RSS and CPU, the flood rate actually offered and its CPU, the
# UDP datagrams the kernel dropped, the whole machine's CPU and its load average.
#
#   benches/flood.sh                     baseline, then 1, 5 and 20 sources, 60 s each
#
# Environment:
#   DURATION     s of legitimate call starts per run (default 60); the flood covers them all
#   SOURCES      source counts, 1..20, space-separated (default "1 5 20"): 127.0.0.11 and up
#   KINDS        flood kinds, comma list of garbage,options,invite (default all three)
#   BASELINE     1 (default): a run without flood first; 0: none
#   LEGIT_RATE   legitimate 112 calls/s (default 10);  HOLD_MS  their length (default 1000)
#   FLOOD_RATE   datagrams/s in all, 0 = as fast as the generator goes (default 0)
#   FLOOD_PROCS  generator processes (default 1; each sends from all the sources in turn, so
#                the offered rate does not depend on the number of sources)
#   FLOOD_NICE   nice level of the flood generator (default 0; the gateway and SIPp run at -10,
#                as in the other benches; on loopback the kernel's receive work for a datagram is
#                mostly done on the sender's CPU time, so this decides how much the flood gets)
#   NETNS        network namespace to run in (default flood112, created on demand; '' = the
#                host's loopback, needs 127.0.0.1:5060/5070/5090 free)
#   OUT          output dir (default /tmp/siaga-flood): results.jsonl (one JSON line per run),
#                runs/<stamp>-<label>/ (SIPp stats, commands, gateway output, result.json)
#   PLAN         dialplan (default benches/bench-plan.toml: 112 → the agency on 127.0.0.1:5090)
#   KEEP=1       keep each run's call log (can be GBs under a flood of today's main)
# Needs root (namespace, nice -10), sipp, gcc, python3 ≥ 3.9. Loopback traffic only; every
# process it starts is stopped by PID and every wait has a deadline.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-60}"
SOURCES="${SOURCES:-1 5 20}"
KINDS="${KINDS:-garbage,options,invite}"
BASELINE="${BASELINE:-1}"
LEGIT_RATE="${LEGIT_RATE:-10}"
HOLD_MS="${HOLD_MS:-1000}"
FLOOD_RATE="${FLOOD_RATE:-0}"
FLOOD_PROCS="${FLOOD_PROCS:-1}"
FLOOD_NICE="${FLOOD_NICE:-0}"
NETNS="${NETNS-flood112}"
OUT="${OUT:-/tmp/siaga-flood}"
PLAN="${PLAN:-$HERE/benches/bench-plan.toml}"

cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
mkdir -p "$OUT"
GEN="$OUT/flood_gen"
gcc -O2 -Wall -Wextra -o "$GEN" "$HERE/benches/flood/flood_gen.c"

in_ns=()
if [ -n "$NETNS" ]; then
  ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
  ip netns exec "$NETNS" ip link set lo up
  in_ns=(ip netns exec "$NETNS")
fi

runs=()
[ "$BASELINE" = 1 ] && runs+=(0)
for s in $SOURCES; do runs+=("$s"); done
keep=()
[ "${KEEP:-0}" = 1 ] && keep=(--keep)

echo "== machine before the runs: $(uptime)"
for s in "${runs[@]}"; do
  FLOOD_NETNS="$NETNS" "${in_ns[@]}" python3 "$HERE/benches/flood/flood.py" run \
    --gw "$HERE/target/release/siaga" --gen "$GEN" --plan "$PLAN" --out "$OUT" \
    --sources "$s" --kinds "$KINDS" --duration "$DURATION" --legit-rate "$LEGIT_RATE" \
    --hold-ms "$HOLD_MS" --flood-rate "$FLOOD_RATE" --flood-procs "$FLOOD_PROCS" \
    --flood-nice "$FLOOD_NICE" "${keep[@]}"
  echo "== machine after the run: $(uptime)"
done
echo
echo "Targets: bridged ≥ 99.9 %, p99 < 200 ms, non-call log growth < 10 MB/min, RSS < 300 MB."
python3 "$HERE/benches/flood/flood.py" table --out "$OUT" --last "${#runs[@]}"
