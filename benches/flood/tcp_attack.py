#!/usr/bin/env python3
"""TCP exhaustion from one address, for benches/tcp_exhaust.sh.

  tcp_attack.py --target 127.0.0.1:5060 --source 127.0.0.11 --idle 5000 --slow 300 \
                --hold 60 --ready FILE --report FILE

Opens --slow "slowloris" connections that send
the start of an INVITE and then one more header byte per connection every second, never
finishing the message, then --idle connections that never send a byte. All from --source (loopback only). Writes FILE --ready once every
connection has been tried (a JSON line: how many are established), keeps them for --hold
seconds while counting those the peer closes, then writes --report (JSON) and exits.
Bounded: connects in batches with a deadline, the whole run ends after --hold seconds.
"""
import argparse, errno, json, os, resource, select, socket, sys, time


def open_batch(target, source, n, deadline):
    """Non-blocking connects, then wait (until deadline) for each to finish. Returns the
    connected sockets and how many failed."""
    pending, failed = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((source, 0))
        except OSError:
            s.close()
            failed += 1
            continue
        err = s.connect_ex(target)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            continue
        pending.append(s)
    done = []
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in pending}
    for fd in by_fd:
        ep.register(fd, select.EPOLLOUT)
    while by_fd and time.monotonic() < deadline:
        for fd, _ in ep.poll(max(0.0, min(1.0, deadline - time.monotonic()))):
            s = by_fd.pop(fd)
            ep.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
                failed += 1
    for s in by_fd.values():  # still not connected at the deadline
        s.close()
        failed += 1
    ep.close()
    return done, failed


def closed_by_peer(s):
    """True if the peer closed (or reset) the connection; reads and drops whatever it sent."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:5060")
    ap.add_argument("--source", default="127.0.0.11")
    ap.add_argument("--idle", type=int, default=5000)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--hold", type=float, default=60)
    ap.add_argument("--connect-timeout", type=float, default=20)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    for ip in (host, a.source):
        if not ip.startswith("127."):
            sys.exit("loopback addresses only")
    if a.idle + a.slow > 60000 or a.hold > 3600:
        sys.exit("at most 60000 connections and 3600 s")
    want = a.idle + a.slow + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))

    t0 = time.monotonic()
    deadline = t0 + a.connect_timeout
    idle, slow, failed = [], [], 0
    # Slowloris first, so they are not the ones a global connection cap turns away (what is
    # measured is whether the gateway closes them by itself). Batches of 500, so the
    # listener's accept queue is not the only thing measured.
    for kind, n in (("slow", a.slow), ("idle", a.idle)):
        while n > 0 and time.monotonic() < deadline:
            got, bad = open_batch(target, a.source, min(500, n), deadline)
            (idle if kind == "idle" else slow).extend(got)
            failed += bad
            n -= min(500, n)
    head = (f"INVITE sip:112@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/TCP {a.source}:5999;"
            "branch=z9hG4bK-slow\r\nX-Slow: ").encode()
    for s in slow:
        try:
            s.send(head)
        except OSError:
            pass
    ready = {"idle_open": len(idle), "slow_open": len(slow), "connect_failed": failed,
             "connect_s": round(time.monotonic() - t0, 1)}
    with open(a.ready + ".tmp", "w") as f:
        f.write(json.dumps(ready) + "\n")
    os.rename(a.ready + ".tmp", a.ready)

    # Hold: one byte per slowloris connection per second; count what the peer closes.
    end = time.monotonic() + a.hold
    idle_closed, slow_closed = set(), set()
    first_closed = {}
    while time.monotonic() < end:
        tick = time.monotonic()
        for s in slow:
            if s in slow_closed:
                continue
            try:
                s.send(b"a")
            except BlockingIOError:
                pass
            except OSError:
                slow_closed.add(s)
                first_closed.setdefault("slow", round(tick - t0, 1))
                continue
            if closed_by_peer(s):
                slow_closed.add(s)
                first_closed.setdefault("slow", round(tick - t0, 1))
        for s in idle:
            if s not in idle_closed and closed_by_peer(s):
                idle_closed.add(s)
                first_closed.setdefault("idle", round(tick - t0, 1))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    report = dict(ready, idle_closed_by_gateway=len(idle_closed), slow_closed_by_gateway=len(slow_closed),
                  first_close_s=first_closed, held_s=round(a.hold, 1))
    for s in idle + slow:
        s.close()
    with open(a.report, "w") as f:
        f.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
