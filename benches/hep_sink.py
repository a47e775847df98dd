#!/usr/bin/env python3
"""A HEP collector that only counts: for measuring the gateway's cost of SIP capture
without a real collector's CPU on the same box. Usage: hep_sink.py HOST:PORT OUT_FILE;
on SIGTERM it writes "packets bytes not_hep3" to OUT_FILE."""
import signal
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
out = sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((host, int(port)))
packets = size = not_hep = 0


def stop(*_):
    with open(out, "w") as f:
        f.write(f"{packets} {size} {not_hep}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
while True:
    data = s.recv(70000)
    packets += 1
    size += len(data)
    if data[:4] != b"HEP3":
        not_hep += 1
