#!/usr/bin/env bash
# The TDoS benchmark (issue 12): legitimate 112 callers at 10 calls/s — each answered, talks,
# presses 1 and talks about 10 s to a SIPp police desk — while 1 to 20 other sources flood 112
# with silent or noise calls at 10 times that rate, from few numbers and from many random ones.
# First the legitimate callers alone (the baseline), then each flood. Reports, for the
# legitimate callers, the share the police answered and their answer-time percentiles (INVITE
# to 200 as SIPp saw it), and how many flood calls a call-taker answered (the gateway's
# challenge keeps the flood's callers behind everyone else and without the menu's early offer).
#
#   benches/tdos.sh                  (root: its own network namespace; about 20 minutes)
#
# Environment:
#   RUNS      runs, each "SOURCES:NUMBERS:KIND[:off]" (default below); "0" is the baseline;
#             ":off" runs the same flood with the challenge turned off (attacks still detected)
#   DURATION  s of legitimate call starts per run (default 40)
#   NETNS     network namespace (default tdos112);  OUT  output dir (default /tmp/siaga-tdos)
#   BIN       gateway binary (default: cargo build --release);  KEEP=1 keeps call logs, recordings
# Needs root, sipp, sox, python3. Loopback traffic only; every process is stopped by PID and
# every wait has a deadline.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${RUNS:-0 1:few:silent 1:many:silent 20:many:silent 20:few:noise 5:many:noise 20:many:silent:off}"
DURATION="${DURATION:-40}"
NETNS="${NETNS:-tdos112}"
OUT="${OUT:-/tmp/siaga-tdos}"
if [ -z "${BIN:-}" ]; then
  cargo build --release --manifest-path "$HERE/Cargo.toml" --bin siaga
  BIN="$HERE/target/release/siaga"
fi
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

mkdir -p "$OUT/media"
media="$OUT/media"
cp "$HERE/tests/data/media/caller_8k.alaw" "$media/speech.alaw"
cp "$HERE/tests/data/media/agency_8k.alaw" "$media/agency_8k.alaw"
# Steady loud noise, nobody speaking (an open line by a road): the labelled generator's "traffic".
sox -n -r 8000 -c 1 -e a-law -t raw "$media/noise.alaw" synth 30 brownnoise vol 0.5

keep=()
[ "${KEEP:-0}" = 1 ] && keep=(--keep)
count=0
echo "== machine before the runs: $(uptime)"
for spec in $RUNS; do
  IFS=: read -r sources numbers kind defence <<< "$spec"
  ip netns exec "$NETNS" python3 "$HERE/benches/tdos/tdos.py" run --gw "$BIN" \
    --plan "$HERE/benches/tdos-plan.toml" --out "$OUT" --media "$media" --duration "$DURATION" \
    --sources "$sources" --numbers "${numbers:-many}" --kind "${kind:-silent}" \
    --defence "${defence:-on}" "${keep[@]}"
  count=$((count + 1))
  echo "== machine after the run: $(uptime)"
done
echo
echo "Targets: ≥ 99 % of legitimate calls reach their agency during the flood, answer p99 < 1 s;"
echo "fewer than 5 % of the flood's calls take a call-taker's time."
python3 "$HERE/benches/tdos/tdos.py" table --out "$OUT" --last "$count"
