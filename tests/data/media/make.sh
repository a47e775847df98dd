#!/usr/bin/env bash
# Regenerates the caller's and the agency's voices the SIPp media scenarios stream
# (raw 8 kHz A-law, what SIPp's rtp_stream plays).
set -euo pipefail
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
espeak-ng -v id -s 140 -w "$tmp/caller.wav" "Tolong, rumah saya terbakar di jalan Pahlawan nomor dua belas. Ada anak di dalam. Cepat, tolong."
espeak-ng -v en -s 150 -w "$tmp/agency.wav" "Police control room. Stay on the line. Help is on the way. Is anyone hurt? Tell me what you see."
sox "$tmp/caller.wav" -r 8000 -c 1 -t raw -e a-law caller_8k.alaw
sox "$tmp/agency.wav" -r 8000 -c 1 -t raw -e a-law agency_8k.alaw
rm -rf "$tmp"
