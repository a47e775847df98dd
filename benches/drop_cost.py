#!/usr/bin/env python3
"""What one flooding source costs the gateway: CPU per OPTIONS datagram dropped by the
per-source budget, against CPU per OPTIONS answered when the source is trusted (exempt).

Starts the release binary on 127.0.0.1 (ports chosen by the kernel), floods OPTIONS from
127.0.0.2 as fast as this script can send for SECONDS, and reads the gateway's CPU time from
/proc and its drop counts from the call log's `rate_limited` events. Loopback only; no root.

    cargo build --release && benches/drop_cost.py          FLOOD_SECONDS=5 RUNS=3 by default
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "siaga")
SECONDS = float(os.environ.get("FLOOD_SECONDS", "5"))
RUNS = int(os.environ.get("RUNS", "3"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(trusted):
    tmp = tempfile.mkdtemp(prefix="drop_cost.")
    config = os.path.join(tmp, "siaga.toml")
    with open(config, "w") as f:
        f.write("[limits]\n")
        if trusted:
            f.write('trusted_sources = ["127.0.0.2"]\n')
    gw = subprocess.Popen(
        [BIN, "serve", "--config", config, "--listen", "udp:127.0.0.1:0",
         "--listen", "tcp:127.0.0.1:0", "--db", os.path.join(tmp, "siaga.db"),
         "--recordings", os.path.join(tmp, "rec")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"})
    target = None
    deadline = time.time() + 30
    while target is None and time.time() < deadline:
        line = gw.stdout.readline()
        if line.startswith("listening udp "):
            host, port = line.split()[2].rsplit(":", 1)
            target = (host, int(port))
    if target is None:
        gw.kill()
        sys.exit("the gateway did not start")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.setblocking(False)
    local = "%s:%d" % s.getsockname()
    msg = (f"OPTIONS sip:gateway SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-flood\r\n"
           f"From: <sip:flood@{local}>;tag=f\r\nTo: <sip:gateway>\r\nCall-ID: flood\r\n"
           "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    sent = replies = 0
    cpu0 = cpu_seconds(gw.pid)
    end = time.time() + SECONDS
    while time.time() < end:
        for _ in range(256):
            try:
                s.sendto(msg, target)
                sent += 1
            except BlockingIOError:
                break
        try:
            while True:
                s.recv(4096)
                replies += 1
        except BlockingIOError:
            pass
    s.settimeout(1.0)
    try:
        while True:
            s.recv(4096)
            replies += 1
    except OSError:
        pass
    cpu = cpu_seconds(gw.pid) - cpu0
    gw.send_signal(signal.SIGTERM)
    gw.wait(timeout=60)
    db = sqlite3.connect(os.path.join(tmp, "siaga.db"))
    dropped = 0
    for (detail,) in db.execute("SELECT detail FROM gateway_events WHERE kind = 'rate_limited'"):
        head = detail.split(" message(s) over", 1)[0]
        if head.isdigit():
            dropped += int(head)
    return sent, replies, dropped, cpu


def main():
    for trusted in (False, True):
        for _ in range(RUNS):
            sent, replies, dropped, cpu = run(trusted)
            handled = replies + dropped
            label = "trusted (all answered)" if trusted else "limited (1000/s budget)"
            per = cpu / handled * 1e6 if handled else float("nan")
            print(f"{label:24} sent {sent:8d} answered {replies:7d} dropped {dropped:8d} "
                  f"gateway CPU {cpu:6.2f} s = {per:6.2f} us per message handled")


if __name__ == "__main__":
    main()
