#!/bin/sh
# Regenerates the 8 kHz mono 16-bit WAV fixtures used by tests/inband_fixtures.rs.
# Needs sox and espeak-ng (Debian: apt-get install sox espeak-ng).
#
#   dtmf-sequence.wav  "0123456789*#ABCD11": tones of 50-120 ms, pauses of 50-150 ms,
#                      varied levels and twist, passed through A-law like a phone line.
#   chords.wav         music-like plucked and triangle-wave chords, 440+523 Hz included.
#   speech-id.wav      Indonesian speech (espeak-ng -v id).
#   speech-en.wav      English speech (espeak-ng -v en).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fmt="-r 8000 -c 1 -b 16 -e signed-integer"

freqs() {
  case "$1" in
    1) echo "697 1209" ;; 2) echo "697 1336" ;; 3) echo "697 1477" ;; A) echo "697 1633" ;;
    4) echo "770 1209" ;; 5) echo "770 1336" ;; 6) echo "770 1477" ;; B) echo "770 1633" ;;
    7) echo "852 1209" ;; 8) echo "852 1336" ;; 9) echo "852 1477" ;; C) echo "852 1633" ;;
    star) echo "941 1209" ;; 0) echo "941 1336" ;; pound) echo "941 1477" ;; D) echo "941 1633" ;;
  esac
}

# digit, tone ms, pause ms, row level dB, column level dB
i=0
parts=""
for spec in \
  "0 50 50 -12 -12" "1 70 80 -10 -14" "2 120 150 -20 -18" "3 60 60 -8 -10" \
  "4 80 100 -15 -15" "5 100 70 -25 -24" "6 55 55 -12 -11" "7 90 120 -14 -20" \
  "8 65 90 -9 -9" "9 110 60 -18 -16" "star 75 80 -12 -12" "pound 85 100 -13 -15" \
  "A 60 70 -12 -12" "B 70 90 -12 -13" "C 80 60 -11 -12" "D 90 110 -12 -12" \
  "1 100 60 -12 -12" "1 100 300 -12 -12"; do
  set -- $spec
  set -- "$1" "$2" "$3" "$4" "$5" $(freqs "$1")
  ms_tone=$(printf '0.%03d' "$2")
  ms_pause=$(printf '0.%03d' "$3")
  sox -n $fmt "$tmp/r.wav" synth "$ms_tone" sine "$6" gain "$4"
  sox -n $fmt "$tmp/c.wav" synth "$ms_tone" sine "$7" gain "$5"
  sox -m -v 1 "$tmp/r.wav" -v 1 "$tmp/c.wav" $fmt "$tmp/t$i.wav"
  sox -n $fmt "$tmp/p$i.wav" trim 0 "$ms_pause"
  parts="$parts $tmp/t$i.wav $tmp/p$i.wav"
  i=$((i + 1))
done
sox -n $fmt "$tmp/lead.wav" trim 0 0.2
sox "$tmp/lead.wav" $parts $fmt "$tmp/seq.wav"
# Through A-law and back, as a phone call would carry it.
sox "$tmp/seq.wav" -r 8000 -c 1 -e a-law "$tmp/seq-alaw.wav"
sox "$tmp/seq-alaw.wav" $fmt dtmf-sequence.wav

# Music-like chords: plucked triads and triangle-wave chords with harmonics.
sox -n $fmt "$tmp/ch1.wav" synth 0.6 sine 440 sine 523.25 remix - gain -6
sox -n $fmt "$tmp/ch2.wav" synth 0.6 pluck C4 pluck E4 pluck G4 remix - gain -3
sox -n $fmt "$tmp/ch3.wav" synth 0.6 triangle A3 triangle C4 triangle E4 remix - gain -6
sox -n $fmt "$tmp/ch4.wav" synth 0.6 pluck F4 pluck A4 pluck C5 pluck F5 remix - gain -3
sox -n $fmt "$tmp/ch5.wav" synth 0.6 square G3 sine B4 sine D5 remix - gain -9
sox "$tmp/ch1.wav" "$tmp/ch2.wav" "$tmp/ch3.wav" "$tmp/ch4.wav" "$tmp/ch5.wav" $fmt chords.wav

# Speech, resampled to 8 kHz telephone band.
espeak-ng -v id -s 160 -w "$tmp/id.wav" \
  "Tolong! Ada kecelakaan di Jalan Sudirman nomor lima, dua orang terluka."
sox "$tmp/id.wav" $fmt speech-id.wav highpass 300 lowpass 3400 gain -n -3
espeak-ng -v en -s 160 -w "$tmp/en.wav" \
  "Please help! An accident at five Main Street, two people are hurt."
sox "$tmp/en.wav" $fmt speech-en.wav highpass 300 lowpass 3400 gain -n -3

ls -l dtmf-sequence.wav chords.wav speech-id.wav speech-en.wav
