#!/usr/bin/env python3
"""112 answer times while one host floods: SIPp makes 40 calls at 4/s from 127.0.0.1 (answer
time = its rtd, INVITE to 200) while this script floods OPTIONS from 127.0.0.2 as fast as it
can for 25 s. A quick check of the call lane and the per-source budget, not the flood bench.

    benches/flood_answer_time.py BINARY none|trusted|default
      none     no config (for a binary without [limits], e.g. an older main)
      trusted  127.0.0.2 in trusted_sources: no budget, so only the call lane helps
      default  the default per-source budget
"""
import os, signal, socket, subprocess, sys, tempfile, time, threading, glob, csv
BIN, CFG = sys.argv[1], sys.argv[2]  # CFG: "none" | "trusted" | "default"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tmp = tempfile.mkdtemp(prefix="lane.")
args = [BIN, "serve", "--listen", "udp:127.0.0.1:0", "--listen", "tcp:127.0.0.1:0",
        "--db", f"{tmp}/db", "--recordings", f"{tmp}/rec"]
if CFG != "none":
    with open(f"{tmp}/c.toml", "w") as f:
        f.write("[limits]\n" + ('trusted_sources = ["127.0.0.2"]\n' if CFG == "trusted" else ""))
    args += ["--config", f"{tmp}/c.toml"]
gw = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                      env={**os.environ, "RUST_LOG": "warn"})
target = None
while target is None:
    line = gw.stdout.readline()
    if line.startswith("listening udp "):
        h, p = line.split()[2].rsplit(":", 1); target = (h, int(p))
stop = time.time() + 25
def flood():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.2", 0)); s.setblocking(False)
    l = "%s:%d" % s.getsockname()
    m = (f"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK-x\r\nFrom: <sip:f@{l}>;tag=f\r\n"
         f"To: <sip:gw>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    while time.time() < stop:
        for _ in range(256):
            try: s.sendto(m, target)
            except BlockingIOError: break
        try:
            while True: s.recv(4096)
        except BlockingIOError: pass
t = threading.Thread(target=flood); t.start()
time.sleep(3)  # the flood builds its queue before the first call
work = tempfile.mkdtemp(prefix="lane-sipp.")
out = subprocess.run(["sipp", f"{target[0]}:{target[1]}", "-sf", f"{ROOT}/tests/sipp/uac_call.xml", "-s", "112",
                      "-i", "127.0.0.1", "-m", "40", "-r", "4", "-d", "200", "-timeout", "60s", "-nostdin",
                      "-trace_rtt", "-rtt_freq", "1", "-mp", "18000", "-cp", "18010"],
                     cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
t.join()
rtts = []
for fn in glob.glob(f"{work}/*_rtt.csv"):
    for row in list(csv.reader(open(fn), delimiter=";"))[1:]:
        try: rtts.append(float(row[1]))
        except (ValueError, IndexError): pass
rtts.sort()
gw.send_signal(signal.SIGTERM); gw.wait(timeout=120)
q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))] if rtts else float("nan")
print(f"{BIN} {CFG:8} sipp exit {out.returncode} calls timed {len(rtts)} answer ms p50 {q(.5):.1f} p90 {q(.9):.1f} max {q(1):.1f}")
