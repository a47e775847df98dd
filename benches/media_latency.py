#!/usr/bin/env python3
"""Payload-level loss and added one-way delay of an RTP relay, read from a loopback pcap.

  media_latency.py PCAP --sut-ports 30000-39999 [--label L] [--jsonl FILE] [--meta JSON]

Python 3 standard library only. Reads classic pcap (micro- or nanosecond timestamps; Ethernet,
raw IP, Linux cooked v1/v2 or BSD loopback link types). See benches/media_latency.sh for the run
that produces the capture and for the pairing method (also summarised here).

Flows are UDP 4-tuples carrying RTP (version 2, not RTCP). With the shared runner's port plan:
  caller -> SUT  : source port in 10000-19999, destination in the SUT's media ports
  SUT -> agency  : source in the SUT's media ports, destination in 20000-29999
  agency -> SUT, SUT -> caller likewise.
Direction "caller>agency" pairs caller->SUT flows (inputs) with SUT->agency flows (outputs),
"agency>caller" pairs agency->SUT with SUT->caller.

Pairing (every call streams the same file, so one payload occurs in every call and, for silence,
many times within a call):
 1. Anchors: an input packet whose payload (first --payload-bytes bytes) does not occur again in
    its own flow within 2*--max-delay is an anchor; its copy can only be one packet per flow.
 2. Flows: a UDP port pair; a new SSRC after a pause of 60 ms or more starts a new flow (later
    calls reuse the ports).
 3. Flow pairing: for a sample of anchors of each input flow (payloads common to most flows,
    up to 128 per flow), every output packet with the same payload sent 0..max-delay later is a
    vote (input flow, output flow, delay). A candidate pair needs votes from at least half of the
    sampled anchors that fall within the output flow's lifetime, and the output flow must start
    and end with the input flow within --slack-s (default 4 s: a relay may stream its own filler
    before the other side answers; keep it below the file's loop time, 8.1 s here, as calls one
    loop apart play the same audio at the same moments). Every call is a time-shifted copy of
    the others, so the calls started just after the true one are candidates as well, with a
    larger but equally steady delay. The pairs kept are the largest set in which the SUT never
    reorders calls (input flows ordered by first packet; output flows by the first packet of the
    nearest input they carry plus its delay: senders that stall drift, the nearest is the most
    faithful),
    with the smallest sum of squared delays among those. A relay that reorders two calls started
    within its own delay of each other cannot be told apart; neighbours that only this order
    decided are counted (order_decided).
 4. Packets within a pair: each anchor to the unused copy (same payload, 0..max-delay later)
    whose delay is closest to the previous anchor's; between two matched anchors, the other
    packets payload by payload, in order, by the matching that pairs the most packets with
    delays closest to the line between the two anchors' delays (this places a loss, or a
    generated packet, inside a run of identical silence). Copies up to 4 packets outside the
    two anchors' copies count too if their delay lies between the anchors' (+-5 ms): relays
    that process packets in parallel swap neighbours now and then.
Loss: input packets without a copy (unpaired input flows lose all their packets); "last 1 s" =
those sent in the last second of their flow. Generated: output packets that copy no input.
Delay percentiles are nearest-rank over all delivered packets, in ms.
"""
import argparse
import bisect
import json
import math
import mmap
import os
import struct
import sys
import time
from array import array

CALLER_PORTS = (10000, 19999)
AGENCY_PORTS = (20000, 29999)
PAIR_KEYS = 64          # distinct payloads used to vote on flow pairs
PAIR_ANCHORS = 128      # anchors per input flow used to vote
LAST_S = 1.0            # "lost in the last second of the call"
NEW_FLOW_PAUSE = 0.06   # a new SSRC after at least this pause (s) on the same ports is a new call
DP_CELLS = 250_000      # beyond this, a run of repeated payloads is matched greedily in order
REORDER_SPAN = 4        # a relay may swap packets this close (rtpengine's threads do, rarely)
REORDER_TOLERANCE = 0.005   # ... if the copy's delay is within the neighbouring anchors' (+- this, s)

LINK_HEADER = {0: 4, 1: 14, 12: 0, 14: 0, 101: 0, 108: 4, 113: 16, 276: 20}


class Flow:
    __slots__ = ("src", "dst", "times", "keys")

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.times = array("d")
        self.keys = array("i")


def parse_range(text):
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def read_pcap(path, sut_ports, payload_bytes, caller=CALLER_PORTS, agency=AGENCY_PORTS):
    """Return ({direction: [Flow]}, stats). Directions: c2s, s2a, a2s, s2c."""
    flows = {"c2s": [], "s2a": [], "a2s": [], "s2c": []}
    stats = {"packets": 0, "rtp": 0, "other": 0, "truncated_file": False}
    size = os.path.getsize(path)
    if size < 24:
        raise ValueError(f"{path}: not a pcap file (too short)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        magic = mm[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            end = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            end = ">"
        else:
            raise ValueError(f"{path}: not a classic pcap file (pcapng is not read; use tcpdump -w)")
        scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
        linktype = struct.unpack_from(end + "I", mm, 20)[0] & 0xFFFF
        if linktype not in LINK_HEADER:
            raise ValueError(f"{path}: link type {linktype} not supported")
        l2 = LINK_HEADER[linktype]
        hdr = struct.Struct(end + "III").unpack_from
        ports = struct.Struct(">HH").unpack_from
        by_key = {}          # 12-byte (src ip, dst ip, ports) -> Flow or None (not RTP of interest)
        payload_ids = {}
        clo, chi = caller
        alo, ahi = agency
        slo, shi = sut_ports
        n = len(mm)
        off = 24
        base = None
        packets = rtp = 0
        while off + 16 <= n:
            sec, frac, incl = hdr(mm, off)
            p = off + 16
            off = p + incl
            if off > n:
                stats["truncated_file"] = True
                break
            packets += 1
            ip = p + l2
            if incl < l2 + 40:
                continue
            v = mm[ip]
            if v >> 4 != 4 or mm[ip + 9] != 17:
                continue
            u = ip + (v & 15) * 4
            if u == ip + 20:
                fk = mm[ip + 12:ip + 24]
            else:
                fk = mm[ip + 12:ip + 20] + mm[u:u + 4]
            state = by_key.get(fk, 0)
            if state == 0:
                sport, dport = ports(fk, 8)
                direction = None
                if clo <= sport <= chi and slo <= dport <= shi:
                    direction = "c2s"
                elif slo <= sport <= shi and alo <= dport <= ahi:
                    direction = "s2a"
                elif alo <= sport <= ahi and slo <= dport <= shi:
                    direction = "a2s"
                elif slo <= sport <= shi and clo <= dport <= chi:
                    direction = "s2c"
                state = [direction, None, None, -1e18] if direction else None
                by_key[fk] = state
            if state is None:
                continue
            r = u + 8
            b0 = mm[r]
            if b0 >> 6 != 2 or 72 <= (mm[r + 1] & 127) <= 76:
                continue
            pl = r + 12 + 4 * (b0 & 15)
            stop = p + incl
            if b0 & 0x10 and pl + 4 <= stop:
                pl += 4 + 4 * ((mm[pl + 2] << 8) | mm[pl + 3])
            if pl >= stop:
                continue
            if base is None:
                base = sec
            t = (sec - base) + frac * scale
            ssrc = mm[r + 8:r + 12]
            if ssrc != state[2]:
                # Ports are reused by later calls: a new SSRC after a pause is a new flow.
                if t - state[3] >= NEW_FLOW_PAUSE:
                    sport, dport = ports(fk, 8)
                    state[1] = Flow(f"{'.'.join(map(str, fk[0:4]))}:{sport}",
                                    f"{'.'.join(map(str, fk[4:8]))}:{dport}")
                    flows[state[0]].append(state[1])
                state[2] = ssrc
            state[3] = t
            flow = state[1]
            payload = mm[pl:min(pl + payload_bytes, stop)]
            pid = payload_ids.get(payload)
            if pid is None:
                pid = payload_ids[payload] = len(payload_ids)
            flow.times.append(t)
            flow.keys.append(pid)
            rtp += 1
    stats.update(packets=packets, rtp=rtp, other=packets - rtp, payloads=len(payload_ids),
                 epoch_base=base)
    for fl in flows.values():
        for flow in fl:
            if any(flow.times[i] > flow.times[i + 1] for i in range(len(flow.times) - 1)):
                order = sorted(range(len(flow.times)), key=flow.times.__getitem__)
                flow.times = array("d", (flow.times[i] for i in order))
                flow.keys = array("i", (flow.keys[i] for i in order))
    return flows, stats


def anchor_mask(flow, gap):
    """1 for packets whose payload does not recur in the flow within `gap` seconds."""
    times, keys = flow.times, flow.keys
    mask = bytearray(b"\x01") * len(times)
    last = {}
    for i, k in enumerate(keys):
        j = last.get(k)
        if j is not None and times[i] - times[j] < gap:
            mask[i] = 0
            mask[j] = 0
        last[k] = i
    return mask


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2] if s else None


def pair_flows(inputs, outputs, anchors, max_delay, slack=4.0):
    """Return (pairs [(i, j, delay_s)], order_decided, candidate_edges)."""
    counts = {}
    for flow, mask in zip(inputs, anchors):
        for k, a in zip(flow.keys, mask):
            if a:
                counts[k] = counts.get(k, 0) + 1
    if not counts:
        return [], 0, 0
    top = max(counts.values())
    common = sorted(k for k, c in counts.items() if c * 2 >= top)
    step = max(1, len(common) // PAIR_KEYS)
    vote_keys = set(common[::step][:PAIR_KEYS])

    index = {k: [] for k in vote_keys}
    for j, flow in enumerate(outputs):
        for t, k in zip(flow.times, flow.keys):
            if k in vote_keys:
                index[k].append((t, j))
    idx_t, idx_f = {}, {}
    for k, lst in index.items():
        lst.sort()
        idx_t[k] = [t for t, _ in lst]
        idx_f[k] = [j for _, j in lst]

    out_first = [f.times[0] if len(f.times) else 0.0 for f in outputs]
    out_last = [f.times[-1] if len(f.times) else 0.0 for f in outputs]
    edges = {}     # (i, j) -> median delay
    for i, (flow, mask) in enumerate(zip(inputs, anchors)):
        sample = [(flow.times[x], flow.keys[x]) for x in range(len(mask))
                  if mask[x] and flow.keys[x] in vote_keys]
        if len(sample) > PAIR_ANCHORS:
            sample = [sample[x * len(sample) // PAIR_ANCHORS] for x in range(PAIR_ANCHORS)]
        sample_t = [t for t, _ in sample]
        votes = {}
        for t, k in sample:
            ts, fs = idx_t[k], idx_f[k]
            p = bisect.bisect_left(ts, t)
            seen = set()
            while p < len(ts) and ts[p] - t <= max_delay:
                j = fs[p]
                if j not in seen:
                    seen.add(j)
                    votes.setdefault(j, []).append(ts[p] - t)
                p += 1
        in_first, in_last = flow.times[0], flow.times[-1]
        for j, ds in votes.items():
            # A call started one file loop earlier or later plays the same audio at the same
            # moments: a candidate must start and end with the input (within `slack`).
            if out_first[j] < in_first - slack or out_last[j] > in_last + max_delay + slack:
                continue
            overlap = (bisect.bisect_right(sample_t, out_last[j])
                       - bisect.bisect_left(sample_t, out_first[j] - max_delay))
            if len(ds) >= min(3, overlap) and 2 * len(ds) >= overlap:
                edges[(i, j)] = median(ds)
    if not edges:
        return [], 0, 0

    # Output flows ordered by when they started the file: start + delay of the nearest input
    # whose audio they carry (the smallest delay: senders that stall drift, so the nearest is
    # the most faithful).
    nearest = {}
    for (i, j), d in edges.items():
        if j not in nearest or d < nearest[j][0]:
            nearest[j] = (d, inputs[i].times[0] + d)
    out_order = sorted(nearest, key=lambda j: nearest[j][1])
    rank = {j: r + 1 for r, j in enumerate(out_order)}
    in_order = sorted({i for i, _ in edges}, key=lambda i: inputs[i].times[0])
    by_input = {}
    for (i, j), d in edges.items():
        by_input.setdefault(i, []).append((j, d))

    # Largest non-crossing set of candidate pairs, then least sum of squared delays (Fenwick max).
    size = len(out_order)
    tree = [(0, 0.0, -1)] * (size + 1)
    chosen = []   # edge records: (i, j, d, prev record index)
    for i in in_order:
        updates = []
        for j, d in by_input[i]:
            r = rank[j] - 1
            best = (0, 0.0, -1)
            while r > 0:
                if tree[r] > best:
                    best = tree[r]
                r -= r & -r
            chosen.append((i, j, d, best[2]))
            updates.append((rank[j], (best[0] + 1, best[1] - d * d, len(chosen) - 1)))
        for r, val in updates:
            while r <= size:
                if val > tree[r]:
                    tree[r] = val
                r += r & -r
    best = max(tree)
    pairs = []
    e = best[2]
    while e >= 0:
        i, j, d, e = chosen[e]
        pairs.append((i, j, d))
    pairs.reverse()
    order_decided = sum(1 for (i1, j1, _), (i2, j2, _) in zip(pairs, pairs[1:])
                        if (i1, j2) in edges and (i2, j1) in edges)
    return pairs, order_decided, len(edges)


def match_run(in_t, exp, out_t, inside, band, max_delay):
    """Order-keeping matching of equal payloads: most pairs, then least sum |delay - expected|.
    An output just outside the segment (`inside` false: the relay reordered packets) is allowed
    only with a delay within `band` (the two anchors' delays, widened by REORDER_TOLERANCE).
    Returns [(input position, output position)]."""
    n, m = len(in_t), len(out_t)
    lo, hi = band

    def allowed(x, y):
        d = out_t[y] - in_t[x]
        return 0 <= d <= max_delay and (inside[y] or lo <= d <= hi)

    if n == m and all(inside) and all(allowed(x, x) for x in range(n)):
        return [(x, x) for x in range(n)]
    if n * m > DP_CELLS:
        res, y = [], 0
        for x in range(n):
            while y < m and out_t[y] < in_t[x]:
                y += 1
            if y < m and allowed(x, y):
                res.append((x, y))
                y += 1
        return res
    f = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for x in range(1, n + 1):
        row, prev = f[x], f[x - 1]
        for y in range(1, m + 1):
            best = prev[y] if prev[y] > row[y - 1] else row[y - 1]
            if allowed(x - 1, y - 1):
                c, s = prev[y - 1]
                cand = (c + 1, s - abs(out_t[y - 1] - in_t[x - 1] - exp[x - 1]))
                if cand > best:
                    best = cand
            row[y] = best
    res, x, y = [], n, m
    while x > 0 and y > 0:
        if allowed(x - 1, y - 1):
            c, s = f[x - 1][y - 1]
            if f[x][y] == (c + 1, s - abs(out_t[y - 1] - in_t[x - 1] - exp[x - 1])):
                res.append((x - 1, y - 1))
                x, y = x - 1, y - 1
                continue
        if f[x][y] == f[x - 1][y]:
            x -= 1
        else:
            y -= 1
    res.reverse()
    return res


def match_packets(inp, out, mask, delay, max_delay):
    """Return array of output positions per input packet (-1 = not delivered)."""
    ti, ki, to, ko = inp.times, inp.keys, out.times, out.keys
    match = array("i", [-1]) * len(ti)
    used = bytearray(len(to))
    okeys = {}
    for m, k in enumerate(ko):
        okeys.setdefault(k, []).append(m)
    time_of = to.__getitem__
    # 1. anchors, each to the unused copy whose delay is closest to the previous anchor's
    exp = delay
    fixed = [(-1, -1, delay)]
    for x in range(len(ti)):
        if not mask[x]:
            continue
        lst = okeys.get(ki[x])
        if not lst:
            continue
        t = ti[x]
        p = bisect.bisect_left(lst, t, key=time_of)
        best, bestdiff = -1, 0.0
        while p < len(lst):
            m = lst[p]
            d = to[m] - t
            if d > max_delay:
                break
            if not used[m]:
                diff = abs(d - exp)
                if best < 0 or diff < bestdiff:
                    best, bestdiff = m, diff
                elif d > exp:
                    break
            p += 1
        if best >= 0:
            match[x] = best
            used[best] = 1
            exp = to[best] - t
            fixed.append((x, best, exp))
    fixed.append((len(ti), len(to), exp))
    # 2. between consecutive matched anchors, payload by payload
    for (xa, ma, da), (xb, mb, db) in zip(fixed, fixed[1:]):
        if xb - xa <= 1:
            continue
        groups_in, groups_out = {}, {}
        for x in range(xa + 1, xb):
            groups_in.setdefault(ki[x], []).append(x)
        for m in range(max(0, min(ma, mb) - REORDER_SPAN), min(len(to), max(ma, mb) + REORDER_SPAN + 1)):
            if not used[m]:
                groups_out.setdefault(ko[m], []).append(m)
        ta = ti[xa] if xa >= 0 else ti[0]
        tb = ti[xb] if xb < len(ti) else ti[-1]
        span = tb - ta
        for k, xs in groups_in.items():
            ms = groups_out.get(k)
            if not ms:
                continue
            in_t = [ti[x] for x in xs]
            exp_t = [da + (db - da) * ((t - ta) / span if span > 0 else 0.0) for t in in_t]
            inside = [ma < m < mb for m in ms]
            band = (min(da, db) - REORDER_TOLERANCE, max(da, db) + REORDER_TOLERANCE)
            for a, b in match_run(in_t, exp_t, [to[m] for m in ms], inside, band, max_delay):
                match[xs[a]] = ms[b]
                used[ms[b]] = 1
    return match


def percentiles_ms(values):
    if not values:
        return {}
    s = sorted(values)

    def rank(q):
        return s[min(len(s) - 1, max(0, math.ceil(len(s) * q / 100) - 1))]
    return {"p50": round(rank(50) * 1e3, 3), "p90": round(rank(90) * 1e3, 3),
            "p99": round(rank(99) * 1e3, 3), "p99.9": round(rank(99.9) * 1e3, 3),
            "max": round(s[-1] * 1e3, 3)}


def analyse_direction(inputs, outputs, max_delay, keep_pairs=False, slack=4.0):
    anchors = [anchor_mask(f, 2 * max_delay) for f in inputs]
    pairs, order_decided, n_edges = pair_flows(inputs, outputs, anchors, max_delay, slack)
    delays = array("d")
    sent = sum(len(f.times) for f in inputs)
    delivered = lost_last = 0
    by_order = 0
    paired_in = set()
    pair_info = []
    for i, j, d in pairs:
        inp, out = inputs[i], outputs[j]
        paired_in.add(i)
        match = match_packets(inp, out, anchors[i], d, max_delay)
        tend = inp.times[-1] - LAST_S
        got = 0
        for x, m in enumerate(match):
            if m >= 0:
                got += 1
                delays.append(out.times[m] - inp.times[x])
                if not anchors[i][x]:
                    by_order += 1
            elif inp.times[x] > tend:
                lost_last += 1
        delivered += got
        if keep_pairs:
            pair_info.append({"in": inp.src + ">" + inp.dst, "in_first_s": inp.times[0],
                              "out": out.src + ">" + out.dst,
                              "delay_ms": round(d * 1e3, 3), "sent": len(match), "delivered": got,
                              "match": list(match)})
    for i, f in enumerate(inputs):
        if i not in paired_in:
            lost_last += sum(1 for t in f.times if t > f.times[-1] - LAST_S)
    out_total = sum(len(f.times) for f in outputs)
    res = {
        "sent": sent, "delivered": delivered, "lost": sent - delivered,
        "lost_pct": round(100 * (sent - delivered) / sent, 4) if sent else None,
        "lost_last_1s": lost_last,
        "generated": out_total - delivered,
        "flows_in": len(inputs), "flows_out": len(outputs), "pairs": len(pairs),
        "candidate_pairs": n_edges, "order_decided": order_decided,
        "delivered_in_repeated_payload_runs": by_order,
        "delay_ms": percentiles_ms(delays),
    }
    if keep_pairs:
        res["pair_list"] = pair_info
    return res


def analyse(path, sut_ports, payload_bytes=32, max_delay=0.5, keep_pairs=False, slack=4.0):
    t0 = time.monotonic()
    flows, stats = read_pcap(path, sut_ports, payload_bytes)
    t1 = time.monotonic()
    res = {"pcap": stats,
           "caller>agency": analyse_direction(flows["c2s"], flows["s2a"], max_delay, keep_pairs, slack),
           "agency>caller": analyse_direction(flows["a2s"], flows["s2c"], max_delay, keep_pairs, slack)}
    res["analysis_s"] = {"read": round(t1 - t0, 1), "total": round(time.monotonic() - t0, 1)}
    return res


def print_table(rows):
    print(f"{'label':<22}{'dir':<15}{'sent':>9}{'deliv':>9}{'lost':>7}{'last1s':>7}{'gen':>7}"
          f"{'pairs':>6}{'ord':>5}{'p50ms':>9}{'p90ms':>9}{'p99ms':>9}{'p99.9ms':>9}{'maxms':>9}{'oth%':>6}{'chk':>5}")
    for r in rows:
        for direction in ("caller>agency", "agency>caller"):
            d = r.get(direction, {})
            dl = d.get("delay_ms", {})
            print(f"{str(r.get('label', ''))[:21]:<22}{direction:<15}{d.get('sent', ''):>9}"
                  f"{d.get('delivered', ''):>9}{d.get('lost', ''):>7}{d.get('lost_last_1s', ''):>7}"
                  f"{d.get('generated', ''):>7}{d.get('pairs', ''):>6}{d.get('order_decided', ''):>5}"
                  f"{dl.get('p50', ''):>9}{dl.get('p90', ''):>9}{dl.get('p99', ''):>9}"
                  f"{dl.get('p99.9', ''):>9}{dl.get('max', ''):>9}{str(r.get('oth_pct', '')):>6}"
                  f"{d.get('check', ''):>5}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pcap", nargs="?")
    ap.add_argument("--sut-ports", type=parse_range, help="the SUT's media ports, LO-HI")
    ap.add_argument("--payload-bytes", type=int, default=32,
                    help="payload bytes compared (the capture's snaplen must include them)")
    ap.add_argument("--max-delay-ms", type=float, default=500.0,
                    help="largest delay searched; a copy later than this counts as lost")
    ap.add_argument("--slack-s", type=float, default=4.0,
                    help="how much earlier an output flow may start, or later end, than its input "
                         "(raise it for a SUT that plays its own audio before relaying)")
    ap.add_argument("--label", default="")
    ap.add_argument("--meta", default="{}", help="JSON object merged into the result line")
    ap.add_argument("--jsonl", help="append the result as one JSON line to this file")
    ap.add_argument("--table", help="print the table of all lines in this JSONL file and exit")
    a = ap.parse_args()
    if a.table:
        print_table([json.loads(line) for line in open(a.table) if line.strip()])
        return
    if not a.pcap or not a.sut_ports:
        ap.error("PCAP and --sut-ports are required")
    res = {"label": a.label, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    res.update(json.loads(a.meta))
    res.update(analyse(a.pcap, a.sut_ports, a.payload_bytes, a.max_delay_ms / 1e3, slack=a.slack_s))
    counters = res.get("runner_rtp") or {}
    for direction, sent, got in (("caller>agency", "caller_sent", "to_agency"), ("agency>caller", "agency_sent", "to_caller")):
        if sent in counters:
            # The runner's iptables counters see only totals: delivered + generated - sent.
            d = res[direction]
            d["sent_vs_runner_counters"] = d["sent"] - counters[sent]
            d["net_vs_runner_counters"] = (d["generated"] - d["lost"]) - (counters[got] - counters[sent])
            d["check"] = abs(d["sent_vs_runner_counters"]) + abs(d["net_vs_runner_counters"])
    if a.jsonl:
        with open(a.jsonl, "a") as f:
            f.write(json.dumps(res) + "\n")
    print_table([res])
    print(f"(analysed {res['pcap']['rtp']} RTP packets in {res['analysis_s']['total']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
