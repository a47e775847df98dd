#!/usr/bin/env python3
"""Checks benches/media_latency.py on a synthetic capture whose every packet's fate is known.

  python3 benches/media_latency_test.py      (standard library only, no root, < 5 s)
  python3 benches/media_latency_test.py --perf 800   (a bench-sized capture: speed and accuracy)

Six calls stream the same looped "file" (60 distinct payloads and a 15-packet run of identical
silence), started 25 ms apart through a relay that adds 35-40 ms (+-3 ms jitter) from caller to
agency: the call started next is always a candidate too, with a steady delay of ~60 ms, so a
pairing by smallest delay or by payload alone is wrong. Known events: a distinct packet lost, a
silence packet lost inside the silence run, a call's last two packets lost, relay-generated packets
(a prompt before the relayed audio, silence after it, 1.5 s of filler to a caller before the agency
answers), an agency stream never relayed, a prompt
flow to a caller with nothing behind it, two packets swapped by the relay (one distinct, one of
the silence run), a distinct packet held 45 ms and overtaken by two silence packets, a seventh call on the ports of the first once it has ended, and RTCP/SIP
packets to ignore. The capture is cut at 32
payload bytes as the bench's snaplen does. The analyser must find exactly the true pairs, the
true copy of every packet, and the counts and delays that follow.
"""
import math
import os
import random
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import media_latency  # noqa: E402

PTIME = 0.020
FRAMES = 75              # 60 distinct + 15 silence
CALL_PACKETS = 152
CALLS = 7
SNAP = 14 + 20 + 8 + 12 + 32


def frames(tag, silence, count=FRAMES, silent=range(30, 45)):
    out = []
    for f in range(count):
        if f in silent:
            out.append(bytes([silence]) * 160)
        else:
            out.append(bytes([tag, f & 0xFF, f >> 8]) + bytes((f * 7 + i) & 0xFF for i in range(157)))
    return out


class Capture:
    def __init__(self):
        self.packets = []   # (t_ns, sport, dport, rtp bytes)

    def rtp(self, t, sport, dport, seq, payload, pt=8, ssrc=0):
        hdr = struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc or sport)
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
    truth = {"c2a": {}, "a2c": {}}   # (input flow name, call) -> (output flow name, [output index or -1])
    c2a_delays, a2c_delays, never_relayed = [], [], []
    for call in range(CALLS):
        # call 6 comes once call 0 has ended, on the same ports at both ends (new SSRCs)
        start = 1000.0 + call * 0.025 if call < 6 else 1003.5
        cport, agport = 10000 + 2 * (call % 6), 20000 + 2 * (call % 6)
        s_caller, s_agency = 30000 + 4 * (call % 6), 30002 + 4 * (call % 6)
        ssrc = 1000 + call
        # caller -> SUT -> agency
        drop = {1: {40}, 2: {37}, 3: {150, 151}}.get(call, set())
        t_in = [start + x * PTIME for x in range(CALL_PACKETS)]
        t_out = {x: t_in[x] + 0.035 + call * 0.001 + rnd.uniform(-0.003, 0.003)
                 for x in range(CALL_PACKETS) if x not in drop}
        if call == 0:   # the caller sends two packets 0.1 ms apart and the relay swaps them
            t_in[30] = t_in[29] + 0.0001
            t_out[30] = t_in[30] + 0.035
            t_out[29] = t_out[30] + 0.00005
        if call == 5:   # the relay stalls on a distinct packet for 45 ms: two silence packets overtake it
            t_out[29] += 0.045
        outs = [cap.rtp(t_out[x], s_agency, agport, x, caller_file[x % FRAMES], ssrc=ssrc) for x in sorted(t_out)]
        ins = [cap.rtp(t, cport, s_caller, x, caller_file[x % FRAMES], ssrc=ssrc) for x, t in enumerate(t_in)]
        c2a_delays += [outs[pos] - ins[x] for pos, x in enumerate(sorted(t_out))]
        if call == 4:   # relay-generated: a prompt before the relayed audio, silence after it
            outs += [cap.rtp(start + 0.001 + g * 0.002, s_agency, agport, 900 + g, b"\xee" * 100 + bytes([g]) * 60)
                     for g in range(3)]
            outs += [cap.rtp(max(t_out.values()) + 0.02 * (g + 1), s_agency, agport, 950 + g, caller_file[35])
                     for g in range(2)]
        order = sorted(outs)
        ns_out = dict(zip(sorted(t_out), outs))
        matches = [order.index(ns_out[x]) if x in ns_out else -1 for x in range(CALL_PACKETS)]
        truth["c2a"][(f"127.0.0.1:{cport}>127.0.0.1:{s_caller}", call)] = (f"127.0.0.1:{s_agency}>127.0.0.1:{agport}", matches)
        # RTCP from the caller and SIP must be ignored
        cap.rtp(start + 0.5, cport + 1, s_caller + 1, 0, b"\x00" * 20, pt=200)
        # agency -> SUT -> caller (call 5: never relayed; the caller gets a prompt instead)
        a_start = start + 0.005
        matches = []
        for x in range(CALL_PACKETS):
            t_in = a_start + x * PTIME + rnd.uniform(-0.001, 0.001)
            payload = agency_file[x % FRAMES]
            ns_in = cap.rtp(t_in, agport, s_agency, x, payload, ssrc=ssrc)
            if call == 5:
                never_relayed.append(ns_in)
                matches.append(-1)
                continue
            t_out = t_in + 0.0001 + rnd.uniform(0, 0.0002)
            ns_out = cap.rtp(t_out, s_caller, cport, x, payload, ssrc=ssrc)
            a2c_delays.append(ns_out - ns_in)
            matches.append(x)
        if call == 4:   # the relay streams its own filler to the caller 1.5 s before the agency answers
            for x in range(75):
                cap.rtp(a_start - 1.5 + x * PTIME + 0.003, s_caller, cport, 5000 + x, b"\x56" * 160, ssrc=ssrc)
            matches = [m + 75 for m in matches]
        if call == 5:
            for x in range(100):
                cap.rtp(a_start + x * PTIME, s_caller, cport, x, b"\x77" + bytes([x]) * 159)
        else:
            truth["a2c"][(f"127.0.0.1:{agport}>127.0.0.1:{s_agency}", call)] = (f"127.0.0.1:{s_caller}>127.0.0.1:{cport}", matches)
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
        got = sorted((p["in"], p["in_first_s"], p["out"], p["match"]) for p in self.res[direction]["pair_list"])
        want = sorted((name, call, out, matches) for (name, call), (out, matches) in truth.items())
        self.assertEqual([(g[0], g[2]) for g in got], [(w[0], w[2]) for w in want], f"{direction}: wrong flow pairs")
        for g, w in zip(got, want):
            self.assertEqual(g[3], w[3], f"{direction}: {w[0]} (call {w[1]}): wrong packet matches")

    def test_every_caller_packet_is_paired_with_its_true_copy(self):
        self.check_pairs("caller>agency", self.truth["c2a"])

    def test_every_agency_packet_is_paired_with_its_true_copy(self):
        self.check_pairs("agency>caller", self.truth["a2c"])

    def test_caller_to_agency_counts(self):
        d = self.res["caller>agency"]
        self.assertEqual((d["sent"], d["delivered"], d["lost"], d["lost_last_1s"], d["generated"]),
                         (CALLS * CALL_PACKETS, CALLS * CALL_PACKETS - 4, 4, 2, 5))
        self.assertEqual((d["flows_in"], d["flows_out"], d["pairs"]), (CALLS, CALLS, CALLS))

    def test_agency_to_caller_counts(self):
        d = self.res["agency>caller"]
        self.assertEqual((d["sent"], d["delivered"], d["lost"], d["lost_last_1s"], d["generated"]),
                         (CALLS * CALL_PACKETS, (CALLS - 1) * CALL_PACKETS, CALL_PACKETS, self.a2c_last_second, 175))
        self.assertIn(self.a2c_last_second, (49, 50, 51))
        self.assertEqual((d["flows_in"], d["flows_out"], d["pairs"]), (CALLS, CALLS, CALLS - 1))

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
        self.assertEqual(self.res["pcap"]["other"], CALLS + 1)


def perf(concurrent, hold_s=30, windows=2):
    """Write a capture the size of a bench run (concurrent*windows calls of hold_s, 4 legs at 50 pps;
    the caller leg delayed 25-45 ms like today's paced relay, the agency leg 0.1 ms), time the
    analysis and compare it with the truth."""
    rnd = random.Random(5)
    # the size of the bench's files: 405 packets (8.1 s), 93 of them one silence payload
    caller_file, agency_file = frames(0xC0, 0xD5, 405, range(200, 293)), frames(0xA0, 0x55, 405, range(100, 193))
    n_pkts = int(hold_s / PTIME)
    rec = struct.Struct("<IIII")
    udp_ip = struct.Struct(">12xH BBHHHBBH4s4s HHHH BBHII")
    lo = bytes([127, 0, 0, 1])
    truth_delays = {"caller>agency": [], "agency>caller": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "perf.pcap")
        t0 = time.monotonic()
        with open(path, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, SNAP, 1))
            start = 1000.0
            for call in range(concurrent * windows):
                start += hold_s / concurrent * rnd.uniform(0.6, 1.4)
                port = call % 4000
                legs = ((10000 + 2 * port, 30000 + 4 * port, 30002 + 4 * port, 20000 + 2 * port, caller_file,
                         0.025, 0.020, "caller>agency"),
                        (20000 + 2 * port, 30002 + 4 * port, 30000 + 4 * port, 10000 + 2 * port, agency_file,
                         0.0001, 0.0002, "agency>caller"))
                chunk = []
                for src, sut_in, sut_out, dst, content, base_delay, spread, direction in legs:
                    for x in range(n_pkts):
                        t_in = start + x * PTIME + rnd.uniform(0, 0.0005)
                        delay = base_delay + rnd.uniform(0, spread)
                        truth_delays[direction].append(delay)
                        payload = content[x % len(content)][:SNAP - 54]
                        for t, a, b in ((t_in, src, sut_in), (t_in + delay, sut_out, dst)):
                            ns = round(t * 1e9)
                            hdr = udp_ip.pack(0x0800, 0x45, 0, 20 + 8 + 12 + 160, 0, 0, 64, 17, 0, lo, lo,
                                              a, b, 8 + 12 + 160, 0, 0x80, 8, x, x * 160, call)
                            chunk.append(rec.pack(ns // 10**9, ns % 10**9, SNAP, 14 + 20 + 8 + 12 + 160) + hdr + payload)
                f.write(b"".join(chunk))
        size = os.path.getsize(path)
        t1 = time.monotonic()
        res = media_latency.analyse(path, (30000, 39999))
        t2 = time.monotonic()
    print(f"capture: {concurrent * windows} calls, {res['pcap']['rtp']} RTP packets, {size >> 20} MiB, "
          f"written in {t1 - t0:.0f} s; analysed in {t2 - t1:.0f} s ({res['analysis_s']})")
    for direction, ds in truth_delays.items():
        ns = [round(d * 1e9) for d in ds]
        want = {q: nearest_rank_ms(ns, q) for q in (50, 99, 99.9)}
        d = res[direction]
        print(f"{direction}: pairs {d['pairs']}/{concurrent * windows}, order decided {d['order_decided']}, "
              f"lost {d['lost']}, generated {d['generated']}; delay ms p50/p99/p99.9 "
              f"{d['delay_ms']['p50']}/{d['delay_ms']['p99']}/{d['delay_ms']['p99.9']} "
              f"(truth {want[50]}/{want[99]}/{want[99.9]})")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--perf":
        perf(int(sys.argv[2]) if len(sys.argv) > 2 else 800)
    else:
        unittest.main(verbosity=2)
