#!/usr/bin/env python3
"""Writes inband_dtmf_159.pcap: an RTP stream (PT 8, A-law, 20 ms) that carries the keys 1, 5
and 9 as in-band DTMF tones (120 ms each, -10 dBm0 per tone, 200 ms apart) — what a phone
without RFC 4733 sends. SIPp replays it with play_pcap_audio (tests/sipp/media_inband.xml).
Run from this directory: python3 make-inband-pcap.py"""
import math
import struct

RATE = 8000
FRAME = 160  # 20 ms
ROWS = {"1": 697, "5": 770, "9": 852}
COLS = {"1": 1209, "5": 1336, "9": 1477}


def alaw(sample: int) -> int:
    """ITU-T G.711 A-law encoding of one 16-bit sample."""
    sign = 0x80 if sample >= 0 else 0x00
    magnitude = min((sample if sample >= 0 else -sample - 1) >> 3, 0xFFF)
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (code | sign) ^ 0x55


def tone(key: str, ms: int, start: int):
    amplitude = 0.316 * 32767 * 0.5  # about -10 dBm0 per frequency
    for n in range(RATE * ms // 1000):
        t = (start + n) / RATE
        yield int(amplitude * (math.sin(2 * math.pi * ROWS[key] * t)
                               + math.sin(2 * math.pi * COLS[key] * t)))


def silence(ms: int):
    yield from (0 for _ in range(RATE * ms // 1000))


samples = []
samples += list(silence(200))
for key in "159":
    samples += list(tone(key, 120, len(samples)))
    samples += list(silence(200))
samples += list(silence(200))
samples += [0] * (-len(samples) % FRAME)

out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
seq, ts, ssrc = 1000, 160000, 0x51A6A112
for i in range(0, len(samples), FRAME):
    payload = bytes(alaw(s) for s in samples[i:i + FRAME])
    rtp = struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload
    udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
    total = 20 + len(udp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    ether = b"\x00" * 12 + b"\x08\x00"
    frame = ether + ip + udp
    elapsed_us = (i // FRAME) * 20_000
    out += struct.pack("<IIII", elapsed_us // 1_000_000, elapsed_us % 1_000_000, len(frame), len(frame))
    out += frame
    seq += 1
    ts += FRAME
open("inband_dtmf_159.pcap", "wb").write(out)
print(f"inband_dtmf_159.pcap: {len(samples) // FRAME} packets")
