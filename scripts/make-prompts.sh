#!/usr/bin/env bash
# Regenerates the spoken prompts of the default dial plan (dialplans/default.toml) from the
# texts below, in Bahasa Indonesia (id) and English (en).
#
#   scripts/make-prompts.sh            # writes dialplans/prompts/{id,en}/*.wav
#   PROMPT_DIR=/tmp/p scripts/make-prompts.sh
#
# Needs espeak-ng (voices "id" and "en") and sox. Output: 8 kHz, mono, 16-bit PCM WAV — what
# the gateway plays into G.711 calls without resampling — with leading/trailing silence
# trimmed and a short pause at the end so that prompts played back to back do not run together.
#
# A real centre should replace these with recordings of a calm human voice; keep the names,
# or change the plan to match. Keep sentences short: callers are frightened, the IVR must be
# quick, and the whole set should stay small (under ~1.5 MB).
set -euo pipefail

cd "$(dirname "$0")/.."
out="${PROMPT_DIR:-dialplans/prompts}"
speed="${PROMPT_SPEED:-165}"   # words per minute; a little slower than espeak's 175 for clarity

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-prompts: $tool is not installed" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# say LANGUAGE NAME TEXT: one prompt file, <out>/<LANGUAGE>/<NAME>.wav
say() {
  local language="$1" name="$2" text="$3"
  mkdir -p "$out/$language"
  espeak-ng -v "$language" -s "$speed" -w "$tmp/raw.wav" "$text"
  sox "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/$language/$name.wav" \
    silence 1 0.05 0.5% reverse silence 1 0.05 0.5% reverse \
    norm -3 pad 0 0.2
}

# --- menu "main" -------------------------------------------------------------------------
# Played once on entry, Indonesian then English. The English greeting offers the switch.
say id welcome "Siaga 112 Samarinda."
say en welcome "Emergency 112. For English, press 9."

# The menu itself; replayed on retries and on *. Keys: 1-5 agencies, 55 silent, 0 operator.
say id main-menu "Polisi, tekan 1. Kebakaran, 2. Ambulans, 3. Bencana, 4. Tim SAR, 5. Tidak bisa bicara? Tekan 5 dua kali. Atau tetap di saluran."
say en main-menu "Police, press 1. Fire, 2. Ambulance, 3. Disaster, 4. Rescue, 5. Cannot speak? Press 5 twice. Or stay on the line."

say id invalid "Maaf, pilihan tidak tersedia."
say en invalid "Sorry, that is not a valid choice."

# --- while an agency's phones ring ---------------------------------------------------------
say id connecting-police "Menyambungkan ke polisi."
say en connecting-police "Connecting you to the police."
say id connecting-fire "Menyambungkan ke pemadam kebakaran."
say en connecting-fire "Connecting you to the fire brigade."
say id connecting-ambulance "Menyambungkan ke ambulans."
say en connecting-ambulance "Connecting you to the ambulance service."
say id connecting-disaster "Menyambungkan ke B P B D, penanggulangan bencana."
say en connecting-disaster "Connecting you to disaster management."
say id connecting-sar "Menyambungkan ke tim SAR."
say en connecting-sar "Connecting you to search and rescue."
say id connecting-calltaker "Menyambungkan ke petugas 112."
say en connecting-calltaker "Connecting you to a 112 operator."

# The "press 5 twice" path: tells a caller who cannot speak that the call is being handled.
say id silent-confirm "Panggilan senyap diterima. Tetap di saluran."
say en silent-confirm "Silent call received. Stay on the line."

# --- policies (issue 12) ---------------------------------------------------------------------
# Repeat callers and watched numbers hear this, then go on to a call-taker.
say id misuse-warning "Penyalahgunaan nomor darurat 112 adalah pelanggaran hukum."
say en misuse-warning "Misuse of emergency number 112 is an offence."
# A blocked number hears this and the call ends (it reaches a call-taker if it keeps calling).
say id number-blocked "Nomor Anda diblokir karena penyalahgunaan 112."
say en number-blocked "Your number is blocked for misuse of 112."

# Under a flood of calls: the caller proves a person is on the line ([flood]).
say id challenge "112 sangat sibuk. Tekan tombol apa saja, atau bicaralah."
say en challenge "112 is very busy. Press any key, or speak."

# --- queue -------------------------------------------------------------------------------
say id all-busy "Semua petugas sibuk. Mohon tetap di saluran."
say en all-busy "All operators are busy. Please stay on the line."
say id you-are-number "Anda nomor"
say en you-are-number "You are number"

id_numbers=(satu dua tiga empat lima enam tujuh delapan sembilan)
en_numbers=(one two three four five six seven eight nine)
for n in 1 2 3 4 5 6 7 8 9; do
  say id "number-$n" "${id_numbers[$((n - 1))]}"
  say en "number-$n" "${en_numbers[$((n - 1))]}"
done

# --- ringback -----------------------------------------------------------------------------
# Heard while an agency is rung: the Indonesian ringing tone, 425 Hz for 1 s then 4 s quiet
# (ITU-T E.180). Not speech, so the same file in each language directory.
for lang in id en; do
  sox -n -r 8000 -c 1 -b 16 -e signed-integer "$out/$lang/ringback.wav" \
    synth 1 sine 425 vol 0.3 pad 0 4
done

du -ch "$out"/id/*.wav "$out"/en/*.wav | tail -1 | sed 's/total/total size of the prompts/'
