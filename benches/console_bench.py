#!/usr/bin/env python3
"""Console bench: fills a call log with N calls shaped like the gateway's (rows, timeline
events, verbatim SIP messages of both legs, locations, recordings), then times each console
page against a running `siaga serve` on it. Standard library only.

  console_bench.py fill DB RECORDINGS_DIR N
  console_bench.py time BASE_URL NAME PASSWORD AGENCY_NAME AGENCY_PASSWORD [REPEAT]
"""
import http.cookiejar
import json
import math
import random
import re
import sqlite3
import statistics
import struct
import sys
import time
import urllib.parse
import urllib.request
import wave

DAY_MS = 86_400_000
ROUTES = ["police", "fire", "ambulance", "disaster", "sar", "calltakers"]
REASONS = ["caller_hung_up"] * 14 + ["abandoned_in_ivr"] * 3 + ["agency_hung_up"] * 2 + [
    "no_agency_answered", "caller_lost"]


def invite(call_id, number, leg, target):
    sdp = ("v=0\r\no=caller 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n")
    return (f"INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call_id}{leg}\r\n"
            f"From: <sip:{number}@10.0.0.1>;tag=a{call_id}\r\nTo: <{target}>\r\n"
            f"Call-ID: {call_id}-{leg}@10.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{number}@10.0.0.1:5060>\r\nP-Asserted-Identity: <tel:{number}>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")


def short(first_line, call_id, leg):
    return (f"{first_line}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call_id}{leg}\r\n"
            f"Call-ID: {call_id}-{leg}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def write_wav(path, seconds):
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        frames = bytearray()
        for i in range(seconds * 8000):
            a = int(8000 * math.sin(i / 8000 * 2 * math.pi * 220) * (0.5 + 0.5 * math.sin(i / 4000)))
            b = int(6000 * math.sin(i / 8000 * 2 * math.pi * 330) * (0.5 + 0.5 * math.cos(i / 3000)))
            frames += struct.pack("<hh", a, b)
        w.writeframes(bytes(frames))


def fill(db, recordings, n):
    rng = random.Random(112)
    wav = f"{recordings}/bench-call.wav"
    write_wav(wav, 60)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = int(time.time() * 1000)
    first = now - 30 * DAY_MS
    calls, events, messages, locations = [], [], [], []
    event_id = message_id = location_id = 0
    pidf = json.dumps({"chosen": {"crs": "EPSG:4326", "shape": "circle",
                                  "center": {"lat": -0.5022, "lon": 117.1536}, "radius": 850.0}})
    for i in range(1, n + 1):
        start = first + (30 * DAY_MS) * i // n
        number = f"+6281{rng.randrange(10**8, 10**9)}"
        route = rng.choice(ROUTES)
        reason = rng.choice(REASONS)
        answered = reason in ("caller_hung_up", "agency_hung_up")
        length = rng.randrange(3_000, 300_000)
        call_id = f"bench{i}"
        calls.append((i, call_id, start, start + 40, start + length, "emergency", "sip:112@10.0.0.9",
                      'menu "main"', f"<sip:{number}@10.0.0.1>;tag=a{i}", json.dumps([f"<tel:{number}>"]),
                      "10.0.0.1:5060", "udp", reason, wav, "ab" * 32, 60_000, number))
        t = start + 40
        evs = [("menu", 'menu "main"'), ("prompt", "play welcome.wav"),
               ("recording_started", f"{wav}: 0:00 in the file is this moment"),
               ("digit", "key 1"), ("route", f'route "{route}" (chosen by key)'),
               ("route_start", f'route "{route}" (Agency), 2 target(s), sequential'),
               ("agency_invite", f"leg B1 → sip:{route}@10.0.1.1:5060 (udp)"), ("agency_ringing", "leg B1: 180")]
        if answered:
            evs.append(("agency_answered", f"leg B1 sip:{route}@10.0.1.1:5060 answered after 4000 ms; caller bridged"))
        for k, (kind, detail) in enumerate(evs):
            event_id += 1
            events.append((event_id, i, t + k * 700, kind, detail))
        msgs = [("A", "in", invite(call_id, number, "A", "sip:112@10.0.0.9")),
                ("A", "out", short("SIP/2.0 100 Trying", call_id, "A")),
                ("A", "out", short("SIP/2.0 200 OK", call_id, "A")),
                ("A", "in", short("ACK sip:siaga@10.0.0.9 SIP/2.0", call_id, "A")),
                ("B1", "out", invite(call_id, number, "B1", f"sip:{route}@10.0.1.1:5060")),
                ("B1", "in", short("SIP/2.0 180 Ringing", call_id, "B1")),
                ("B1", "in", short("SIP/2.0 200 OK", call_id, "B1")),
                ("A", "in", short("BYE sip:siaga@10.0.0.9 SIP/2.0", call_id, "A")),
                ("A", "out", short("SIP/2.0 200 OK", call_id, "A"))]
        for k, (leg, direction, raw) in enumerate(msgs):
            message_id += 1
            remote = "10.0.0.1:5060" if leg == "A" else "10.0.1.1:5060"
            messages.append((message_id, i, t + k * 500, direction, "udp", "10.0.0.9:5060", remote,
                             raw.split("\r\n", 1)[0], raw.encode(), leg))
        if i % 3 == 0:
            location_id += 1
            locations.append((location_id, i, start, "invite", "1 location: circle -0.5022 117.1536 r 850 m", pidf))
        if i % 5000 == 0 or i == n:
            conn.executemany("INSERT INTO calls (id, call_id, started_at, answered_at, ended_at, kind, dialled,"
                             " entry, caller_from, caller_pai, source, transport, end_reason, recording_path,"
                             " recording_sha256, recording_ms, caller_number) VALUES"
                             " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", calls)
            conn.executemany("INSERT INTO call_events (id, call, at, kind, detail) VALUES (?,?,?,?,?)", events)
            conn.executemany("INSERT INTO sip_messages (id, call, at, direction, transport, local, remote,"
                             " first_line, raw, leg) VALUES (?,?,?,?,?,?,?,?,?,?)", messages)
            conn.executemany("INSERT INTO call_locations (id, call, at, source, summary, report)"
                             " VALUES (?,?,?,?,?,?)", locations)
            conn.commit()
            calls, events, messages, locations = [], [], [], []
    conn.execute("ANALYZE")
    conn.commit()
    print(f"filled {n} calls, {event_id} events, {message_id} SIP messages, {location_id} locations")


def session(base, name, password):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    # The sign-in form's own token (login CSRF): its cookie goes in the jar, its field here.
    form = opener.open(f"{base}/login").read().decode()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)
    data = urllib.parse.urlencode({"name": name, "password": password, "csrf": csrf}).encode()
    opener.open(f"{base}/login", data)
    return opener


def timed(opener, url, headers=None, repeat=20):
    times = []
    for _ in range(repeat):
        req = urllib.request.Request(url, headers=headers or {})
        t0 = time.perf_counter()
        with opener.open(req) as r:
            body = r.read()
            status = r.status
        times.append((time.perf_counter() - t0) * 1000)
    return status, len(body), times


def time_pages(base, name, password, agency, agency_password, repeat):
    sup = session(base, name, password)
    pol = session(base, agency, agency_password)
    newest = max(int(x) for x in re.findall(r'href="/calls/(\d+)"', sup.open(f"{base}/calls").read().decode()))
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * 86400 + 8 * 3600))
    pages = [
        ("calls, newest page", sup, "/calls", None),
        ("calls, caller number (rare)", sup, "/calls?caller=0812-0000-0001", None),
        ("calls, caller number (common prefix)", sup, "/calls?caller=62811", None),
        ("calls, route police", sup, "/calls?route=police", None),
        ("calls, not answered, >= 60 s", sup, "/calls?answered=no&min_s=60", None),
        ("calls, end reason", sup, "/calls?end=caller_lost", None),
        ("calls, call-backs", sup, "/calls?callback=1", None),
        ("calls, one day", sup, f"/calls?from={day}&to={day}T23:59", None),
        ("calls, page 100 (before=)", sup, f"/calls?before={newest - 5000}", None),
        ("calls, agency (scoped)", pol, "/calls", None),
        ("calls in progress (poll)", sup, "/calls/live", None),
        ("a call (60 s recording, waveform, ladder)", sup, f"/calls/{newest - 3}", None),
        ("recording, Range 64 kB", sup, f"/calls/{newest - 3}/recording", {"Range": "bytes=500000-565535"}),
        ("summary, one day", sup, f"/summary?from={day}", None),
        ("summary, 7 days", sup, f"/summary?from={day}&to=" + time.strftime("%Y-%m-%d", time.gmtime(time.time() + 4 * 86400 + 8 * 3600)), None),
        ("summary, agency one day", pol, f"/summary?from={day}", None),
        ("access trail", sup, "/trail", None),
    ]
    print(f"{'page':44} {'status':>6} {'bytes':>8} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    worst = 0.0
    for label, opener, path, headers in pages:
        status, size, times = timed(opener, base + path, headers, repeat)
        times.sort()
        p90 = times[max(0, math.ceil(len(times) * 0.9) - 1)]
        worst = max(worst, p90)
        print(f"{label:44} {status:>6} {size:>8} {statistics.median(times):>10.1f} {p90:>8.1f} {times[-1]:>8.1f}")
    print(f"worst p90: {worst:.1f} ms (target < 100 ms)")


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        time_pages(sys.argv[2], *sys.argv[3:7], int(sys.argv[7]) if len(sys.argv) > 7 else 20)
