#!/usr/bin/env python3
"""Checks benches/media_latency.py on a synthetic capture whose every packet's fate is known.

  python3 benches/media_latency_test.py      (standard library only, no root, < 5 s)

Six calls stream the same looped "file" (60 distinct payloads and a 15-packet run of identical
silence), started 25 ms apart through a relay that adds 35-40 ms (+-3 ms jitter) from caller to
agency: the call started next is always a candidate too, with a steady delay of ~60 ms, so a
pairing by smallest delay or by payload alone is wrong. Known events: a distinct packet lost, a
silence packet lost inside the silence run, a call's last two packets lost, relay-generated packets
(a prompt before the relayed audio, silence after it), an agency stream never relayed, a prompt
flow to a caller with nothing behind it, two packets swapped by the relay (one distinct, one of
the silence run), and RTCP/SIP packets to ignore. The capture is cut at 32
payload bytes as the bench's snaplen does. The analyser must find exactly the true pairs, the
true copy of every packet, and the counts and delays that follow.
"""
import math
import os
import random
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import media_latency  # noqa: E402

PTIME = 0.020
FRAMES = 75              # 60 distinct + 15 silence
CALL_PACKETS = 152
SNAP = 14 + 20 + 8 + 12 + 32


def frames(tag, silence):
    out = []
    for f in range(FRAMES):
        if 30 <= f < 45:
            out.append(bytes([silence]) * 160)
        else:
            out.append(bytes([tag, f]) + bytes((f * 7 + i) & 0xFF for i in range(158)))
    return out


class Capture:
    def __init__(self):
        self.packets = []   # (t_ns, sport, dport, rtp bytes)

    def rtp(self, t, sport, dport, seq, payload, pt=8):
        hdr = struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, sport)
        self.packets.append((round(t * 1e9), sport, dport, hdr + payload))
        return round(t * 1e9)

    def write(self, path):
        self.packets.sort(key=lambda p: p[0])
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, SNAP, 1))
            for t_ns, sport, dport, data in self.packets:
                udp = struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data
                ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                                 bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
                frame = bytes(12) + b"\x08\x00" + ip
                cut = frame[:SNAP]
                f.write(struct.pack("<IIII", t_ns // 10**9, t_ns % 10**9, len(cut), len(frame)) + cut)


def build(path):
    rnd = random.Random(17)
    cap = Capture()
    caller_file, agency_file = frames(0xC0, 0xD5), frames(0xA0, 0x55)
    truth = {"c2a": {}, "a2c": {}}   # input flow name -> (output flow name, [output index or -1])
    c2a_delays, a2c_delays, never_relayed = [], [], []
    for call in range(6):
        start = 1000.0 + call * 0.025
        cport, agport = 10000 + 2 * call, 20000 + 2 * call
        s_caller, s_agency = 30000 + 4 * call, 30002 + 4 * call
        # caller -> SUT -> agency
        drop = {1: {40}, 2: {37}, 3: {150, 151}}.get(call, set())
        t_in = [start + x * PTIME for x in range(CALL_PACKETS)]
        t_out = {x: t_in[x] + 0.035 + call * 0.001 + rnd.uniform(-0.003, 0.003)
                 for x in range(CALL_PACKETS) if x not in drop}
        if call == 0:   # the caller sends two packets 0.1 ms apart and the relay swaps them
            t_in[30] = t_in[29] + 0.0001
            t_out[30] = t_in[30] + 0.035
            t_out[29] = t_out[30] + 0.00005
        outs = [cap.rtp(t_out[x], s_agency, agport, x, caller_file[x % FRAMES]) for x in sorted(t_out)]
        ins = [cap.rtp(t, cport, s_caller, x, caller_file[x % FRAMES]) for x, t in enumerate(t_in)]
        c2a_delays += [outs[pos] - ins[x] for pos, x in enumerate(sorted(t_out))]
        if call == 4:   # relay-generated: a prompt before the relayed audio, silence after it
            outs += [cap.rtp(start + 0.001 + g * 0.002, s_agency, agport, 900 + g, b"\xee" * 100 + bytes([g]) * 60)
                     for g in range(3)]
            outs += [cap.rtp(max(t_out.values()) + 0.02 * (g + 1), s_agency, agport, 950 + g, caller_file[35])
                     for g in range(2)]
        order = sorted(outs)
        ns_out = dict(zip(sorted(t_out), outs))
        matches = [order.index(ns_out[x]) if x in ns_out else -1 for x in range(CALL_PACKETS)]
        truth["c2a"][f"127.0.0.1:{cport}>127.0.0.1:{s_caller}"] = (f"127.0.0.1:{s_agency}>127.0.0.1:{agport}", matches)
        # RTCP from the caller and SIP must be ignored
        cap.rtp(start + 0.5, cport + 1, s_caller + 1, 0, b"\x00" * 20, pt=200)
        # agency -> SUT -> caller (call 5: never relayed; the caller gets a prompt instead)
        a_start = start + 0.005
        matches = []
        for x in range(CALL_PACKETS):
            t_in = a_start + x * PTIME + rnd.uniform(-0.001, 0.001)
            payload = agency_file[x % FRAMES]
            ns_in = cap.rtp(t_in, agport, s_agency, x, payload)
            if call == 5:
                never_relayed.append(ns_in)
                matches.append(-1)
                continue
            t_out = t_in + 0.0001 + rnd.uniform(0, 0.0002)
            ns_out = cap.rtp(t_out, s_caller, cport, x, payload)
            a2c_delays.append(ns_out - ns_in)
            matches.append(x)
        if call == 5:
            for x in range(100):
                cap.rtp(a_start + x * PTIME, s_caller, cport, x, b"\x77" + bytes([x]) * 159)
        else:
            truth["a2c"][f"127.0.0.1:{agport}>127.0.0.1:{s_agency}"] = (f"127.0.0.1:{s_caller}>127.0.0.1:{cport}", matches)
    cap.packets.append((round(1000.1e9), 5070, 5060, b"INVITE sip:112@127.0.0.1 SIP/2.0\r\n"))
    cap.write(path)
    last_second = sum(1 for ns in never_relayed if ns > never_relayed[-1] - 10**9)
    return truth, c2a_delays, a2c_delays, last_second


def nearest_rank_ms(ns_values, q):
    s = sorted(ns_values)
    k = max(0, math.ceil(len(s) * q / 100) - 1)
    return round(s[min(len(s) - 1, k)] / 1e6, 3)


class AnalyserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(cls.tmp.name, "synthetic.pcap")
        cls.truth, cls.c2a_ns, cls.a2c_ns, cls.a2c_last_second = build(path)
        cls.res = media_latency.analyse(path, (30000, 39999), payload_bytes=32, max_delay=0.5, keep_pairs=True)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_pairs(self, direction, truth):
        got = {p["in"]: (p["out"], p["match"]) for p in self.res[direction]["pair_list"]}
        self.assertEqual({k: v[0] for k, v in got.items()}, {k: v[0] for k, v in truth.items()},
                         f"{direction}: wrong flow pairs")
        for flow, (_, matches) in truth.items():
            self.assertEqual(got[flow][1], matches, f"{direction}: {flow}: wrong packet matches")

    def test_every_caller_packet_is_paired_with_its_true_copy(self):
        self.check_pairs("caller>agency", self.truth["c2a"])

    def test_every_agency_packet_is_paired_with_its_true_copy(self):
        self.check_pairs("agency>caller", self.truth["a2c"])

    def test_caller_to_agency_counts(self):
        d = self.res["caller>agency"]
        self.assertEqual((d["sent"], d["delivered"], d["lost"], d["lost_last_1s"], d["generated"]),
                         (6 * CALL_PACKETS, 6 * CALL_PACKETS - 4, 4, 2, 5))
        self.assertEqual((d["flows_in"], d["flows_out"], d["pairs"]), (6, 6, 6))

    def test_agency_to_caller_counts(self):
        d = self.res["agency>caller"]
        self.assertEqual((d["sent"], d["delivered"], d["lost"], d["lost_last_1s"], d["generated"]),
                         (6 * CALL_PACKETS, 5 * CALL_PACKETS, CALL_PACKETS, self.a2c_last_second, 100))
        self.assertIn(self.a2c_last_second, (49, 50, 51))
        self.assertEqual((d["flows_in"], d["flows_out"], d["pairs"]), (6, 6, 5))

    def test_delays_are_those_of_the_true_copies(self):
        for direction, ns in (("caller>agency", self.c2a_ns), ("agency>caller", self.a2c_ns)):
            got = self.res[direction]["delay_ms"]
            want = {"p50": nearest_rank_ms(ns, 50), "p90": nearest_rank_ms(ns, 90), "p99": nearest_rank_ms(ns, 99),
                    "p99.9": nearest_rank_ms(ns, 99.9), "max": round(max(ns) / 1e6, 3)}
            for k, v in want.items():
                self.assertAlmostEqual(got[k], v, delta=0.0011, msg=f"{direction} {k}")
        self.assertGreater(self.res["caller>agency"]["delay_ms"]["p50"], 30)
        self.assertLess(self.res["agency>caller"]["delay_ms"]["max"], 0.5)

    def test_ignores_rtcp_and_sip(self):
        self.assertEqual(self.res["pcap"]["other"], 6 + 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
