#!/usr/bin/env python3
"""Builds the committed seed corpora under fuzz/seeds/<target>/ from the project's test data.

Run from anywhere: `python3 fuzz/make-seeds.py`. Deterministic; rewrites fuzz/seeds/.
Sources: tests/data/rfc4475/*.dat, tests/sipp/*.xml (rendered), crates/location/tests/data/*,
dialplans/default.toml, a few hand-made RTP/WAV/INFO inputs, and fuzz/regressions/ (inputs that
once failed; `open-*` ones, still failing, are left out).
"""
import re
import shutil
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
SEP = b"\xff"  # engine_sip's datagram separator


def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ---- SIP messages -------------------------------------------------------------------------
def sipp_messages(path, transport="UDP"):
    """The <send> messages of a SIPp scenario, placeholders filled, Content-Length fixed."""
    xml = path.read_text(encoding="latin-1")
    out = []
    for i, block in enumerate(re.findall(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", xml, re.S)):
        lines = [l.strip() for l in block.strip("\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if "" in lines:
            cut = lines.index("")
            head, body = lines[:cut], lines[cut + 1:]
        else:
            head, body = lines, []
        body_text = "".join(l + "\r\n" for l in body)
        subs = {
            "service": "112", "remote_ip": "198.51.100.1", "remote_port": "5060",
            "local_ip": "192.0.2.10", "local_port": "5070", "transport": transport,
            "branch": f"z9hG4bK-seed-{i}", "pid": "4242", "call_number": "1",
            "call_id": "seed-1@192.0.2.10", "local_ip_type": "4", "media_ip_type": "4",
            "media_ip": "192.0.2.10", "media_port": "6000",
            "next_url": "sip:112@198.51.100.1:5060", "routes": "",
            "peer_tag_param": ";tag=$TAG",
        }
        if "urn" in path.name:
            subs["service"] = "urn:service:sos"
            subs["next_url"] = "urn:service:sos"

        def fill(s):
            return re.sub(r"\[([a-z_]+)\]", lambda m: subs.get(m.group(1), m.group(0)), s)

        body_text = fill(body_text)
        subs["len"] = str(len(body_text.encode()))
        head = [fill(l) for l in head if fill(l)]
        # SIPp writes "INVITE sip:urn:service:sos@..." for URN scenarios sometimes; keep as is.
        msg = "".join(l + "\r\n" for l in head) + "\r\n" + body_text
        out.append(msg.encode())
    return out


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)

    rfc4475 = sorted((ROOT / "tests/data/rfc4475").glob("*.dat"))
    for f in rfc4475:
        data = f.read_bytes()
        put("sip_parse", f.stem, data)
        put("engine_sip", f.stem, data)
        # tcp_framer: no cut bytes (whole stream), and a 3-way cut.
        put("tcp_framer", f.stem, b"\x00" + data + b"\r\n\r\n" + data)
        put("tcp_framer_chunking", f.stem, data + b"\r\n\r\n" + data)

    scenarios = sorted((ROOT / "tests/sipp").glob("*.xml"))
    for f in scenarios:
        for transport, ctl in (("UDP", 0x00), ("TCP", 0x01)):
            msgs = sipp_messages(f, transport)
            if not msgs:
                continue
            for j, m in enumerate(msgs):
                put("sip_parse", f"{f.stem}-{transport.lower()}-{j}", m.replace(b"$TAG", b"gw1"))
            # engine_sip: the dialog in order, 100 ms apart, after the first message.
            parts = []
            for j, m in enumerate(msgs):
                step = 0 if j == 0 else 2  # 0 ms, then 100 ms
                parts.append(bytes([ctl | (step << 2)]) + m)
            put("engine_sip", f"{f.stem}-{transport.lower()}", SEP + SEP.join(parts))
            stream = b"".join(m.replace(b"$TAG", b"gw1") for m in msgs)
            put("tcp_framer", f"{f.stem}-{transport.lower()}", bytes([3, 7, 64, 200]) + stream)
            put("tcp_framer_chunking", f"{f.stem}-{transport.lower()}", stream)

    # engine_sip: a call that hears the menu, presses a key (RFC 4733 digit via control
    # 0x80 = extra input 4), waits, and the gateway's BYE is answered with $REPLY.
    call = sipp_messages(ROOT / "tests/sipp/uac_call.xml") if (ROOT / "tests/sipp/uac_call.xml").exists() else []
    if len(call) >= 2:
        invite, ack = call[0], call[1]
        seq = [b"\x00" + invite, bytes([2 << 2]) + ack, bytes([0x80 | (4 << 2)]) + b"",
               bytes([6 << 2]) + b"", bytes([(5 << 5) | (2 << 2)]) + b"", bytes([2 << 2]) + b"$REPLY 200 OK"]
        put("engine_sip", "call-digit-gateway-bye", SEP + SEP.join(seq))
        info_body = b"Signal=1\r\nDuration=160\r\n"
        info = (ack.replace(b"ACK sip:", b"INFO sip:").replace(b"CSeq: 1 ACK", b"CSeq: 2 INFO")
                .replace(b"z9hG4bK-seed-1", b"z9hG4bK-seed-info")
                .replace(b"Content-Length: 0", b"Content-Type: application/dtmf-relay\r\nContent-Length: %d" % len(info_body))
                + info_body)
        put("engine_sip", "call-info-digit", SEP + SEP.join([b"\x00" + invite, bytes([2 << 2]) + ack,
                                                              bytes([4 << 2]) + info, bytes([6 << 2]) + b""]))
        cancel = call[0].split(b"\r\n\r\n")[0]
        cancel = cancel.replace(b"INVITE sip:", b"CANCEL sip:", 1).replace(b"CSeq: 1 INVITE", b"CSeq: 1 CANCEL")
        cancel = re.sub(rb"Content-Type:[^\r]*\r\n", b"", cancel)
        cancel = re.sub(rb"Content-Length:[^\r]*", b"Content-Length: 0", cancel) + b"\r\n\r\n"
        put("engine_sip", "invite-cancel", SEP + SEP.join([b"\x00" + invite, b"\x00" + cancel]))

    # engine_sip: a bridged call. Key 0 routes to the call-takers; the agency rings, answers
    # with SDP, talks, then hangs up (an in-dialog BYE built from $FTAG/$CALLID); and a
    # variant where the agency refuses (503) so the engine fails over.
    if len(call) >= 2:
        sdp = (b"v=0\r\no=agency 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               b"m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")
        ok = (b"$REPLY 200 OK\r\nContact: <sip:desk@127.0.0.1:5080>\r\nContent-Type: application/sdp\r\n"
              b"Content-Length: %d\r\n\r\n" % len(sdp) + sdp)
        agency_bye = (b"BYE sip:gw@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKagbye\r\n"
                      b"From: <sip:desk@127.0.0.1:5080>;tag=fuzzpeer\r\nTo: <sip:gw@198.51.100.1>;tag=$FTAG\r\n"
                      b"Call-ID: $CALLID\r\nCSeq: 7 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        refer = (b"REFER sip:gw@198.51.100.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKagref\r\n"
                 b"From: <sip:desk@127.0.0.1:5080>;tag=fuzzpeer\r\nTo: <sip:gw@198.51.100.1>;tag=$FTAG\r\n"
                 b"Call-ID: $CALLID\r\nCSeq: 8 REFER\r\nRefer-To: <sip:fire@127.0.0.1:5083>\r\n"
                 b"Contact: <sip:desk@127.0.0.1:5080>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        head = [b"\x00" + invite, bytes([2 << 2]) + ack, bytes([(4 << 5) | (4 << 2)]) + b"x" * 12,  # key 0
                bytes([5 << 2]) + b""]
        put("engine_sip", "bridged-agency-bye", SEP + SEP.join(head + [
            bytes([1 << 2]) + b"$REPLY 180 Ringing", bytes([3 << 2]) + ok,
            bytes([2 | (5 << 2)]) + agency_bye, bytes([2 << 2]) + b"$REPLY 200 OK"]))
        put("engine_sip", "bridged-refer", SEP + SEP.join(head + [
            bytes([3 << 2]) + ok, bytes([2 | (4 << 2)]) + refer, bytes([3 << 2]) + b"$REPLY 180 Ringing",
            bytes([3 << 2]) + ok]))
        put("engine_sip", "agency-503-failover", SEP + SEP.join(head + [
            bytes([1 << 2]) + b"$REPLY 503 Service Unavailable", bytes([2 << 2]) + b"$REPLY 486 Busy Here",
            bytes([6 << 2]) + ok, bytes([(5 << 5) | (3 << 2)]) + b"", bytes([2 << 2]) + b"$REPLY 200 OK"]))

    loc = ROOT / "crates/location/tests/data"
    for f in sorted(loc.glob("*.sip")):
        data = f.read_bytes()
        put("sip_parse", f.stem, data)
        put("engine_sip", f.stem, data)
        put("location_extract", f.stem, data)
        # SDP part of the VoLTE body for the SDP target.
        m = re.search(rb"(v=0.*?)(\r?\n--)", data, re.S)
        if m:
            put("sdp_answer", f.stem, m.group(1))
        pani = b"\n".join(re.findall(rb"P-Access-Network-Info:\s*([^\r\n]*)", data))
        if pani:
            put("pani_and_cells", f.stem, pani + b"\x00" + (loc / "cells-kaltim.csv").read_bytes())
    for f in sorted(loc.glob("*.xml")):
        data = f.read_bytes()
        put("pidf", f.stem, data)
        hdr = (b"INVITE urn:service:sos SIP/2.0\r\nGeolocation: <cid:loc@example.com>\r\n"
               b"Content-Type: application/pidf+xml\r\nContent-ID: <loc@example.com>\r\n\r\n")
        put("location_extract", f.stem, hdr + data)
    put("pani_and_cells", "cells-kaltim", (loc / "cells-kaltim.csv").read_bytes())
    put("pani_and_cells", "pani-variants",
        b"3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=5101F0001A2B3C4D5;network-provided\n"
        b"3GPP-UTRAN-TDD; utran-cell-id-3gpp=51010000AB12345, IEEE-802.11;i-wlan-node-id=ffee\n"
        b"3GPP-NR-FDD;nrcgi=5101F000000000001;local-time-zone=\"UTC+08:00\"\n"
        b"GSTN;gstn-location=\"x\"\x00cell_id,lat,lon,radius_m,area\n1,0,0,1,A\n")
    put("location_extract", "geolocation-uris",
        b"Geolocation: <sips:loc@lis.example>;inserted-by=\"lis\", <https://lis.example/x>\n"
        b"Geolocation-Routing: no\nGeolocation-Error: 100 ;code=\"Cannot Process Location\"\n\n")

    # SDP offers.
    put("sdp_answer", "g711-te", b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\na=sendrecv\r\n")
    put("sdp_answer", "two-streams-v6", b"v=0\r\no=- 2 2 IN IP6 2001:db8::1\r\ns=-\r\nt=0 0\r\n"
        b"m=video 5000 RTP/AVP 96\r\nc=IN IP6 2001:db8::1\r\na=rtpmap:96 H264/90000\r\n"
        b"m=audio 6000 RTP/SAVP 0 18\r\nc=IN IP6 2001:db8::1\r\na=inactive\r\na=maxptime:40\r\n")
    put("sdp_answer", "hold", b"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        b"m=audio 6000 RTP/AVP 0\r\na=sendonly\r\n")
    for f in rfc4475:
        if b"application/sdp" in f.read_bytes():
            body = f.read_bytes().split(b"\r\n\r\n", 1)[-1]
            put("sdp_answer", f.stem, body)

    # RTP: [decoder PT] then [len][packet] ...
    def rtp(pt, seq, ts, ssrc, payload, marker=False, pad=0, csrc=0, ext=None):
        first = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | csrc
        p = bytes([first, (0x80 if marker else 0) | pt]) + struct.pack(">HII", seq, ts, ssrc)
        p += b"".join(struct.pack(">I", 0x1000 + i) for i in range(csrc))
        if ext is not None:
            p += struct.pack(">HH", 0xBEDE, len(ext) // 4) + ext
        p += payload
        if pad:
            p += b"\x00" * (pad - 1) + bytes([pad])
        return p

    def ev(code, end, dur):
        return bytes([code, (0x80 if end else 0) | 10]) + struct.pack(">H", dur)

    pkts = [rtp(101, 1, 1000, 7, ev(5, False, 160), marker=True), rtp(101, 2, 1000, 7, ev(5, False, 320)),
            rtp(101, 3, 1000, 7, ev(5, True, 480)), rtp(101, 4, 1000, 7, ev(5, True, 480)),
            rtp(8, 5, 1160, 7, b"\xd5" * 160), rtp(101, 6, 2000, 7, ev(11, True, 800), marker=True)]
    put("rtp_view", "dtmf-5-then-hash", bytes([101]) + b"".join(bytes([len(p)]) + p for p in pkts))
    put("rtp_view", "csrc-ext-pad", bytes([96]) + bytes([0]) + rtp(0, 9, 9, 9, b"\xff" * 20, pad=4, csrc=2, ext=b"\x10\xaa\x00\x00"))
    put("rtp_view", "retransmit-zero-len", bytes([101]) + bytes([16]) + rtp(101, 1, 5, 5, ev(1, True, 400)) + b"\x00\x00")

    # SIP INFO bodies: content type line, then body.
    put("sip_info_dtmf", "relay", b"application/dtmf-relay\nSignal=5\r\nDuration=160\r\n")
    put("sip_info_dtmf", "relay-star", b"application/dtmf-relay; x=y\nSignal= *\nDuration= 250\n")
    put("sip_info_dtmf", "dtmf", b"application/dtmf\n#")
    put("sip_info_dtmf", "relay-hex", b"Application/DTMF-Relay\nsignal=11\r\nduration=100000000000\r\n")

    # WAV files: small, of several shapes.
    def wav(fmt_tag, ch, rate, bits, data, ext=False, extra=b""):
        block = ch * bits // 8
        if ext:
            fmt = struct.pack("<HHIIHH", 0xFFFE, ch, rate, rate * block, block, bits)
            fmt += struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", fmt_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        else:
            fmt = struct.pack("<HHIIHH", fmt_tag, ch, rate, rate * block, block, bits)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", len(data)) + data
        return b"RIFF" + struct.pack("<I", len(body)) + body

    tone = b"".join(struct.pack("<h", (i * 997) % 20000 - 10000) for i in range(400))
    put("wav_prompt", "mono-8k-16", wav(1, 1, 8000, 16, tone))
    put("wav_prompt", "stereo-16k-16", wav(1, 2, 16000, 16, tone))
    put("wav_prompt", "extensible", wav(1, 1, 8000, 16, tone, ext=True))
    put("wav_prompt", "list-chunk-odd", wav(1, 1, 8000, 16, tone[:301], extra=b"LIST\x03\x00\x00\x00abc\x00"))
    put("wav_prompt", "u8", wav(1, 1, 8000, 8, tone[:200]))
    put("wav_prompt", "alaw", wav(6, 1, 8000, 8, tone[:200]))
    put("wav_prompt", "truncated", wav(1, 1, 8000, 16, tone)[:120])
    prompt = ROOT / "dialplans/prompts/en/invalid.wav"
    if prompt.exists():
        put("wav_prompt", "prompt-invalid-head", prompt.read_bytes()[:2048])

    # Dial plans.
    plan = (ROOT / "dialplans/default.toml").read_bytes()
    put("dialplan_validate", "default", plan)
    # The default plan with one route split into a second file.
    put("dialplan_validate", "default-two-files", plan + b"\x0c[centre]\nname = \"x\"\n")
    put("dialplan_validate", "small", b"""[centre]
name = "Tiny"
languages = ["en"]
last_resort = "desk"

[[emergency]]
numbers = ["112"]
urns = ["urn:service:sos"]
route = "desk"

[route.desk]
label = "Desk"
targets = ["sip:desk@127.0.0.1:5080"]
""")


def regressions():
    """Inputs that once failed, replayed by every run: fuzz/regressions/<target>/<name>.
    `open-*` files still fail (reported, not yet fixed) and are not copied, so that fuzzing can
    go on; rename one to `fixed-<commit>-*` once the fix is in."""
    for f in sorted((FUZZ / "regressions").glob("*/*")):
        if f.is_file() and not f.name.startswith("open-"):
            put(f.parent.name, "regression-" + f.name, f.read_bytes())


if __name__ == "__main__":
    main()
    regressions()
