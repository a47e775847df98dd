#!/usr/bin/env bash
# Is a system call per RTP packet what keeps the media bench's CPU up? Measures the CPU cost
# of one loopback datagram sent with sendto (as the reactors do) against io_uring batches,
# alternating the two RUNS times; prints each run and the medians in microseconds.
# Needs gcc and liburing-dev (apt-get install -y gcc liburing-dev). No root.
#   benches/send_cost.sh            RUNS=6 by default
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
RUNS="${RUNS:-6}"
bin="$(mktemp -d /tmp/send_cost.XXXX)/send_cost"
gcc -O2 -o "$bin" "$HERE/send_cost/send_cost.c" -luring
results="$(
  for _ in $(seq "$RUNS"); do
    "$bin" sendto && "$bin" io_uring
  done
)"
echo "$results"
for way in sendto io_uring; do
  echo "$results" | awk -v w="$way" '$1 == w { print $2 }' | sort -n |
    awk -v w="$way" '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
      printf "median %-8s %.2f us of CPU per datagram (%d runs)\n", w, m, NR }'
done
rm -rf "$(dirname "$bin")"
