#!/usr/bin/env python3
"""Analyses a run of `benches/cluster.sh failover` (standard library only).

Inputs: the caller SIPp's files (-trace_stat: calls started and failed; -trace_rtt: one row
per answered call with the time of its 200 and its INVITE→200 time) and the times the script
noted (start, kill, the front marking the node inactive, restart, rejoin).

A call's start time is its 200's time minus its response time, so each answered call is placed
where it began. New calls that failed = calls started − calls answered (SIPp counts both). A
call that was answered only after the front failed it over from the dead node shows as a
"detour": response time over 500 ms (the front waits 1 s for the dead node's 100 Trying)."""
import argparse
import glob
import math
import os
import sqlite3


def epoch(field):
    """SIPp writes times as 'date<TAB>time<TAB>epoch'; the epoch is the last part."""
    return float(field.replace("\t", " ").split()[-1])


def read_stat(directory):
    path = next(iter(sorted(glob.glob(os.path.join(directory, "*_.csv")))), None)
    if path is None:
        raise SystemExit(f"no SIPp -trace_stat file in {directory}")
    with open(path, encoding="latin-1") as f:
        header = f.readline().rstrip("\n;").split(";")
        rows = [dict(zip(header, line.rstrip("\n;").split(";"))) for line in f if line.strip()]
    return rows


def read_rtt(directory, sipp_start):
    """Date_ms is ms since SIPp's start (the stat file's StartTime)."""
    path = next(iter(sorted(glob.glob(os.path.join(directory, "*_rtt.csv")))), None)
    if path is None:
        raise SystemExit(f"no SIPp -trace_rtt file in {directory}")
    answered = []  # (start epoch, response ms)
    with open(path, encoding="latin-1") as f:
        f.readline()
        for line in f:
            parts = line.rstrip("\n;").split(";")
            if len(parts) < 2:
                continue
            at = sipp_start + float(parts[0]) / 1000.0
            rtt_ms = float(parts[1])
            answered.append((at - rtt_ms / 1000.0, rtt_ms))
    return sorted(answered)


def open_calls(db):
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = conn.execute(
            "select end_reason, count(*) from calls group by end_reason order by 1"
        ).fetchall()
        return {str(r[0]): r[1] for r in rows}
    except sqlite3.Error as e:
        return {"error": str(e)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sipp-dir", required=True)
    for name in ("start", "kill", "inactive", "restart", "rejoin"):
        p.add_argument(f"--{name}", type=float, required=True)
    p.add_argument("--held-by-killed", default="?")
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--node-a")
    p.add_argument("--node-b")
    p.add_argument("--shared-log", action="store_true", help="the nodes log to PostgreSQL")
    a = p.parse_args()

    stat = read_stat(a.sipp_dir)
    last = stat[-1]
    started = int(last["OutgoingCall(C)"])
    successful = int(last["SuccessfulCall(C)"])
    failed = int(last["FailedCall(C)"])
    answered = read_rtt(a.sipp_dir, epoch(stat[0]["StartTime"]))
    new_failed = started - len(answered)
    rel = lambda t: t - a.kill  # noqa: E731 - seconds after the kill
    detours = [(s, ms) for s, ms in answered if ms > 500]
    # Gaps in the answered calls' start times longer than 3 call intervals: calls that
    # started there and were never answered.
    gaps = []
    for (s0, _), (s1, _) in zip(answered, answered[1:]):
        if s1 - s0 > 3.0 / a.rate:
            gaps.append((rel(s0), rel(s1)))
    print(f"calls started {started}, answered {len(answered)}, new calls failed {new_failed}")
    print(f"SIPp: successful {successful}, failed {failed} "
          f"(failed beyond new calls = calls cut at the kill: {failed - new_failed}; "
          f"the killed node held {a.held_by_killed} answered calls)")
    if detours:
        print(f"answered after a detour (> 500 ms): {len(detours)}, starting "
              f"{rel(detours[0][0]):+.2f} … {rel(detours[-1][0]):+.2f} s from the kill, "
              f"slowest {max(ms for _, ms in detours):.0f} ms")
    else:
        print("answered after a detour (> 500 ms): 0")
    print("gaps in answered call starts (s from the kill): "
          + (", ".join(f"{g0:+.2f}…{g1:+.2f}" for g0, g1 in gaps) or "none"))
    last_trouble = max([rel(s) for s, _ in detours] + [g1 for _, g1 in gaps] + [0.0])
    print(f"new calls answered normally again {last_trouble:.2f} s after the kill")
    if not math.isnan(a.inactive):
        print(f"front marked the node inactive {a.inactive - a.kill:.2f} s after the kill")
    print(f"node restarted at {a.restart - a.kill:+.1f} s, back in the front's list "
          f"{a.rejoin - a.restart:.2f} s later")
    ms = sorted(ms for _, ms in answered)
    if ms:
        q = lambda f: ms[min(len(ms) - 1, int(f * len(ms)))]  # noqa: E731
        print(f"INVITE→200 ms: p50 {q(0.5):.0f}, p99 {q(0.99):.0f}, max {ms[-1]:.0f}")
    for name, db in (("A", a.node_a), ("B", a.node_b)):
        if db and not a.shared_log:
            print(f"node {name} call log by end reason: {open_calls(db)}")


if __name__ == "__main__":
    main()
