#!/usr/bin/env bash
# The labelled-call generator (issue 12): 380 SIPp calls of known kinds through the gateway on
# the default dial plan, with SIPp call-takers and police desks answering, then the call-class
# rules' accuracy per class (benches/labelled_calls.py) against the labels.
#
#   benches/labelled_calls.sh          (root: runs in its own network namespace)
#
# Kinds (label = the class a person would give; counts in KINDS below):
#   speech        talks the whole call (espeak speech, 25 s), presses nothing
#   key           silence on the line, presses 1 after 2 s (police answer), 12 s
#   silent        silence on the line for 25 s (the call-takers get it after 15 s)
#   silent_no_rtp a phone that sends no RTP at all, 25 s
#   abandoned     silence, hangs up after 4 s
#   noise         short bursts of noise (a phone in a pocket), 25 s
#   repeat        one number calling three times in a row: abandoned, abandoned, repeat
#   test          an RFC 6881 test call to urn:service:test.sos
# and harder ones, where rules on signal energy can be wrong:
#   whisper       says one word ("tolong", 0.5 s of speech) and is silent after it, 20 s: a
#                 person would call it genuine
#   noisy_speech  talks over loud background noise, 25 s: genuine
#   traffic       steady loud noise and nobody speaking (an open line by a road), 25 s
# Every number is new except within a repeat group, so no other call is a repeat.
# Env: BIN (gateway binary; default: cargo build --release), NETNS (default label112),
#      RATE (calls per second per kind, default 4), KEEP=1 keeps the work directory.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
NETNS="${NETNS:-label112}"
RATE="${RATE:-4}"
WORK_PREFIX=siaga-labelled
# shellcheck source=netns_run.sh
source "$HERE/benches/netns_run.sh"

# The callers' sounds (raw 8 kHz A-law, what SIPp's rtp_stream plays).
cp "$HERE/tests/data/media/caller_8k.alaw" "$work/speech.alaw"
sox -n -r 8000 -c 1 -e a-law -t raw "$work/silence.alaw" trim 0.0 10.0
sox -n -r 8000 -c 1 -e a-law -t raw "$work/noise.alaw" synth 0.25 pinknoise vol 0.4 pad 0 0.75 repeat 11
cp "$HERE/tests/data/media/agency_8k.alaw" "$work/agency_8k.alaw"
espeak-ng -v id -s 140 -w "$work/word.wav" "tolong"
sox "$work/word.wav" -r 8000 -c 1 -e a-law -t raw "$work/whisper.alaw" pad 0.5 25
sox -t raw -r 8000 -e a-law -c 1 "$work/speech.alaw" -t raw -r 8000 -e a-law -c 1 "$work/noisy_speech.alaw" \
  synth pinknoise mix vol 1.0
sox -n -r 8000 -c 1 -e a-law -t raw "$work/traffic.alaw" synth 30 brownnoise vol 0.5

"${NS[@]}" "$BIN" serve --listen udp:127.0.0.1:5060 --http off --db "$work/siaga.db" \
  --recordings "$work/rec" --rtp-ports 30000-39999 --dialplan "$HERE/dialplans/default.toml" \
  > "$work/gw.stdout" 2> "$work/gw.stderr" &
pids+=("$!")
for _ in $(seq 100); do grep -q '^listening udp' "$work/gw.stdout" && break; sleep 0.1; done
grep -q '^listening udp' "$work/gw.stdout" || { cat "$work/gw.stderr"; exit 1; }

# Call-takers (5080, 5089) and police (5081, 5082) answer every call and talk until the BYE.
media=20000
for port in 5080 5089 5081 5082; do
  (cd "$work" && exec "${NS[@]}" sipp -sf "$HERE/tests/sipp/agency_answer.xml" -i 127.0.0.1 \
    -p "$port" -mp "$media" -nostdin -aa > "agency-$port.log" 2>&1) &
  pids+=("$!")
  media=$((media + 2000))
done

# scenario NAME URI AUDIO DIGIT HOLD_MS: a caller scenario from the template.
scenario() {
  local name="$1" uri="$2" audio="$3" digit="$4" hold="$5" audio_xml="" digit_xml=""
  [ "$audio" != none ] && audio_xml="<nop><action><exec rtp_stream=\"$audio.alaw,-1,8\"/></action></nop>"
  if [ "$digit" != none ]; then
    digit_xml="<pause milliseconds=\"2000\"/>
  <send retrans=\"500\" start_txn=\"info\"><![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: \"Labelled caller\" <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <$uri>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=$digit
      Duration=160
    ]]></send>
  <recv response=\"200\" response_txn=\"info\"/>"
  fi
  python3 - "$HERE/benches/sipp/uac_labelled.xml" "$work/$name.xml" "$uri" "$audio_xml" "$digit_xml" "$hold" <<'EOF'
import sys
src, dst, uri, audio, digit, hold = sys.argv[1:]
text = open(src).read()
for key, value in (("@REQUEST_URI@", uri), ("@AUDIO@", audio), ("@DIGIT@", digit), ("@HOLD_MS@", hold)):
    text = text.replace(key, value)
open(dst, "w").write(text)
EOF
}

# calls NAME LABEL COUNT FIRST_NUMBER [REPEATS]: an injection file of COUNT calls, each
# number used REPEATS times in a row (labels: the first REPEATS-1 "abandoned", then LABEL).
calls() {
  local name="$1" label="$2" count="$3" first="$4" repeats="${5:-1}"
  {
    echo SEQUENTIAL
    for ((i = 0; i < count; i++)); do
      local n=$((first + i / repeats)) l="$label"
      if [ "$repeats" -gt 1 ] && [ $((i % repeats)) -lt $((repeats - 1)) ]; then l=abandoned; fi
      echo "+62812$n;$l;"
    done
  } > "$work/$name.csv"
}

# run NAME COUNT RATE SIP_PORT: one kind's SIPp caller (its own SIP and media ports).
run() {
  local name="$1" count="$2" rate="$3" port="$4"
  echo "== $name: $count calls"
  (cd "$work" && "${NS[@]}" sipp 127.0.0.1:5060 -sf "$name.xml" -inf "$name.csv" \
    -i 127.0.0.1 -p "$port" -mp $((10000 + (port - 5170) * 800)) -m "$count" -r "$rate" -l 200 \
    -aa -nostdin -timeout 300s -trace_err > "$name.log" 2>&1) || echo "   (SIPp reported failures: see $work/$name.log)"
}

scenario speech "sip:112@127.0.0.1:5060" speech none 25000
scenario key "sip:112@127.0.0.1:5060" silence 1 10000
scenario silent "sip:112@127.0.0.1:5060" silence none 25000
scenario silent_no_rtp "sip:112@127.0.0.1:5060" none none 25000
scenario abandoned "sip:112@127.0.0.1:5060" silence none 4000
scenario noise "sip:112@127.0.0.1:5060" noise none 25000
scenario repeat "sip:112@127.0.0.1:5060" silence none 4000
scenario test "urn:service:test.sos" none none 3000
scenario whisper "sip:112@127.0.0.1:5060" whisper none 20000
scenario noisy_speech "sip:112@127.0.0.1:5060" noisy_speech none 25000
scenario traffic "sip:112@127.0.0.1:5060" traffic none 25000
calls speech genuine 60 10000000
calls key genuine 40 10100000
calls silent silent 50 10200000
calls silent_no_rtp silent 20 10300000
calls abandoned abandoned 50 10400000
calls noise pocket_or_noise 50 10500000
calls repeat repeat 30 10600000 3
calls test test 20 10700000
calls whisper genuine 20 10800000
calls noisy_speech genuine 20 10900000
calls traffic pocket_or_noise 20 11000000

# Waits for the callers only (the agencies run until the end).
callers=()
run speech 60 "$RATE" 5170 & callers+=("$!")
run key 40 "$RATE" 5171 & callers+=("$!")
run silent 50 "$RATE" 5172 & callers+=("$!")
wait "${callers[@]}"
callers=()
run silent_no_rtp 20 "$RATE" 5173 & callers+=("$!")
run abandoned 50 "$RATE" 5174 & callers+=("$!")
run noise 50 "$RATE" 5175 & callers+=("$!")
# The repeat group: three calls in a row per number at 1 call/s, well within the 10 minutes
# the rule counts.
run repeat 30 1 5176 & callers+=("$!")
run test 20 "$RATE" 5177 & callers+=("$!")
wait "${callers[@]}"
callers=()
run whisper 20 "$RATE" 5178 & callers+=("$!")
run noisy_speech 20 "$RATE" 5179 & callers+=("$!")
run traffic 20 "$RATE" 5180 & callers+=("$!")
wait "${callers[@]}"
kill -TERM "${pids[0]}" && wait "${pids[0]}" 2>/dev/null || true
python3 "$HERE/benches/labelled_calls.py" "$work/siaga.db"
"$BIN" report --db "$work/siaga.db"
