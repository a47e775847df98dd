#!/usr/bin/env python3
"""One run of the flood benchmark (driven by benches/flood.sh), and the results table.

  flood.py run --gw BIN --gen FLOOD_GEN --plan PLAN --out DIR --label L --sources N ...
  flood.py table --out DIR

A run: a fresh gateway (its own empty call log), a SIPp agency (uas_sig.xml) on 127.0.0.1:5090,
a flood from N loopback sources (127.0.0.11 and up; flood_gen.c, none when N = 0), and legitimate
112 callers (SIPp uac_sig.xml from 127.0.0.1:5070) at --legit-rate calls/s that start --warmup s
after the flood. The flood lasts until every legitimate call has had time to end. Sampled every
0.5 s: the gateway's RSS and CPU, the flooders' CPU, the whole machine's CPU, and the size of the
call log (database + WAL). After the run the call log is read for what was logged.
Every process it starts is stopped by PID, every wait has a deadline. One JSON line per run is
appended to DIR/results.jsonl.
"""
import argparse, datetime, glob, json, os, shutil, signal, sqlite3, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
HZ = os.sysconf("SC_CLK_TCK")
GW = "127.0.0.1:5060"
AGENCY_PORT = "5090"
CALLER_PORT = "5070"
FIRST_SOURCE = "127.0.0.11"


def log(msg):
    print(f"[flood {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except OSError:
        pass
    return None


def system_ticks():
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def udp_snmp():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def log_bytes(db):
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def stop(p, name, sig=signal.SIGTERM, grace=10.0):
    """Stops one process we started (by its Popen), SIGKILL after the grace time.
    Returns (seconds it took, whether it had to be killed)."""
    if p is None or p.poll() is not None:
        return 0.0, False
    t = time.monotonic()
    p.send_signal(sig)
    try:
        p.wait(timeout=grace)
        return round(time.monotonic() - t, 1), False
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop in {grace:.0f} s, killing it")
        p.kill()
        p.wait(timeout=10)
        return round(time.monotonic() - t, 1), True


def wait_or_stop(p, timeout, name):
    """Waits for a SIPp we started to end; past its time guard, stops it (SIGUSR1: SIPp writes
    its statistics and exits). Returns its exit code."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} exceeded its time guard, stopping it")
        stop(p, name, sig=signal.SIGUSR1)
        return p.returncode


def wait_listening(work, gw, timeout=15):
    """Until the gateway (Popen, output in work/gw.stdout) says it listens; raises if it exits
    or stays silent for `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(os.path.join(work, "gw.stdout")) as f:
            if any(l.startswith("listening udp") for l in f):
                return
        if gw.poll() is not None:
            raise RuntimeError("gateway exited: " + open(os.path.join(work, "gw.stderr")).read()[-800:])
        time.sleep(0.1)
    raise RuntimeError(f"gateway did not say 'listening udp' within {timeout} s")


class Sampler(threading.Thread):
    """Samples every 0.5 s until stopped (or max_s): RSS, CPU ticks, call-log size."""

    def __init__(self, gw_pid, db, max_s):
        super().__init__(daemon=True)
        self.gw_pid, self.db, self.max_s = gw_pid, db, max_s
        self.flooders = []
        self.sipp = []
        self.flood_last = {}  # pid -> last ticks seen (a flooder that exited keeps its CPU)
        self.rows = []
        self.done = threading.Event()

    def sample(self):
        busy, total = system_ticks()
        for p in self.flooders + self.sipp:
            t = proc_ticks(p)
            if t is not None:
                self.flood_last[p] = t
        return {"t": time.monotonic(), "rss_kb": proc_status(self.gw_pid, "VmRSS"),
                "gw_ticks": proc_ticks(self.gw_pid),
                "flood_ticks": sum(self.flood_last.get(p, 0) for p in self.flooders),
                "sipp_ticks": sum(self.flood_last.get(p, 0) for p in self.sipp),
                "sys_busy": busy, "sys_total": total, "log_bytes": log_bytes(self.db)}

    def run(self):
        t_end = time.monotonic() + self.max_s
        while not self.done.is_set() and time.monotonic() < t_end:
            self.rows.append(self.sample())
            self.done.wait(0.5)

    def at(self, t):
        """The last sample taken at or before monotonic time t (else the first)."""
        best = self.rows[0]
        for r in self.rows:
            if r["t"] <= t:
                best = r
        return best


def sipp_stat_last(path):
    try:
        with open(path) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";")))


def percentile(sorted_vals, total, q):
    """q-th percentile over `total` calls, where calls without a value (never answered)
    count as infinitely slow: None if the percentile falls on one of them."""
    if total == 0:
        return None
    k = max(0, int(-(-q * total // 100)) - 1)  # nearest rank
    return round(sorted_vals[k], 1) if k < len(sorted_vals) else None


def read_rtts(work, scenario="uac_sig"):
    """INVITE->200 as the caller saw it, one value (ms) per answered call (SIPp -trace_rtt of
    the scenario file named `scenario`)."""
    vals = []
    for path in glob.glob(os.path.join(work, f"{scenario}_*_rtt.csv")):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2 and parts[0][:1].isdigit():
                    vals.append(float(parts[1]))
    return sorted(vals)


def query_log(db):
    """What the call log holds after the run (read-only; the gateway has stopped)."""
    out = {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        q = lambda sql: con.execute(sql).fetchone()[0]
        out["calls_by_kind"] = dict(con.execute("select kind, count(*) from calls group by kind").fetchall())
        out["sip_messages"] = q("select count(*) from sip_messages")
        out["sip_messages_noncall"] = q(
            "select count(*) from sip_messages where call is null or call in "
            "(select id from calls where kind != 'emergency')")
        raw_all = q("select coalesce(sum(length(raw)), 0) from sip_messages") or 0
        raw_nc = q("select coalesce(sum(length(raw)), 0) from sip_messages where call is null or call in "
                   "(select id from calls where kind != 'emergency')") or 0
        out["noncall_raw_share"] = round(raw_nc / raw_all, 4) if raw_all else 0.0
        out["emergency_bridged"] = q(
            "select count(distinct e.call) from call_events e join calls c on c.id = e.call "
            "where e.kind = 'agency_answered' and c.kind = 'emergency'")
        out["emergency_recorded"] = q(
            "select count(*) from calls where kind = 'emergency' and recording_sha256 is not null")
        con.close()
    except sqlite3.Error as e:
        out["error"] = str(e)
    return out


def run(a):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = a.label or (f"flood-{a.sources}src" + (f"-{a.flood_rate:g}pps" if a.flood_rate else "")
                        if a.sources else "baseline")
    work = os.path.join(a.out, "runs", f"{stamp}-{label}")
    os.makedirs(work)
    db = os.path.join(work, "siaga.db")
    legit_total = int(round(a.legit_rate * a.duration))
    hold_s = a.hold_ms / 1000
    # The flood covers the whole legitimate traffic: warm-up, call starts, call length, margin.
    flood_s = a.warmup + a.duration + hold_s + 3
    guard_s = flood_s + a.recv_timeout + 60
    load_start = os.getloadavg()
    result = {"label": label, "started": stamp, "sources": a.sources,
              "kinds": a.kinds if a.sources else "", "duration_s": a.duration,
              "legit_rate": a.legit_rate, "legit_calls": legit_total, "hold_ms": a.hold_ms,
              "flood_s": round(flood_s, 1) if a.sources else 0, "flood_procs": a.flood_procs if a.sources else 0,
              "flood_rate_cap": a.flood_rate, "nice": a.nice, "flood_nice": a.flood_nice,
              "netns": os.environ.get("FLOOD_NETNS", ""),
              "loadavg_start": [round(x, 2) for x in load_start], "workdir": work}
    procs = {}
    flooders = []
    sampler = None
    try:
        gw_cmd = ["nice", "-n", str(a.nice), a.gw, "serve", "--listen", f"udp:{GW}",
                  "--db", db, "--recordings", os.path.join(work, "rec"), "--rtp-ports", "30000-39999",
                  "--dialplan", a.plan]
        procs["gw"] = subprocess.Popen(gw_cmd, cwd=work, stdin=subprocess.DEVNULL,
                                       stdout=open(os.path.join(work, "gw.stdout"), "w"),
                                       stderr=open(os.path.join(work, "gw.stderr"), "w"))
        wait_listening(work, procs["gw"])

        procs["uas"] = subprocess.Popen(
            ["nice", "-n", str(a.nice), "sipp", "-sf", os.path.join(HERE, "uas_sig.xml"),
             "-i", "127.0.0.1", "-p", AGENCY_PORT, "-mp", "26000", "-cp", "8891", "-nostdin",
             "-default_behaviors", "all,-abortunexp",
             "-trace_stat", "-stf", os.path.join(work, "uas_stat.csv"), "-fd", "1",
             "-trace_err", "-error_file", os.path.join(work, "uas_errors.log"),
             "-timeout", f"{int(guard_s + 30)}s", "-max_socket", "10000"],
            cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, "uas.stderr"), "w"))

        sampler = Sampler(procs["gw"].pid, db, guard_s + 120)
        sampler.sipp = [procs["uas"].pid]
        snmp0 = udp_snmp()
        sampler.start()
        t0 = time.monotonic()

        # Flooders: each process sends from all the sources in turn, so the offered rate does not
        # depend on how many sources there are; only how it is spread over addresses does.
        if a.sources:
            per_proc_rate = a.flood_rate / a.flood_procs if a.flood_rate else 0
            for i in range(a.flood_procs):
                p = subprocess.Popen(
                    ["nice", "-n", str(a.flood_nice), a.gen, GW.split(":")[0], GW.split(":")[1],
                     FIRST_SOURCE, str(a.sources), a.kinds,
                     f"{flood_s:.1f}", str(a.flood_max_count), str(per_proc_rate)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=open(os.path.join(work, f"flood{i}.stderr"), "w"), text=True)
                flooders.append(p)
            sampler.flooders = [p.pid for p in flooders]
            time.sleep(a.warmup)  # the legitimate calls start into a running flood

        t_legit = time.monotonic()
        uac_cmd = ["nice", "-n", str(a.nice), "sipp", GW, "-sf", os.path.join(HERE, "uac_sig.xml"),
                   "-s", "112", "-i", "127.0.0.1", "-p", CALLER_PORT, "-mp", "24000", "-cp", "8890",
                   "-r", str(a.legit_rate), "-m", str(legit_total), "-l", str(int(a.legit_rate * 60) + 100),
                   "-d", str(a.hold_ms), "-recv_timeout", f"{a.recv_timeout}s", "-nostdin",
                   "-timeout", f"{int(guard_s)}s", "-max_socket", "10000",
                   "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", os.path.join(work, "uac_stat.csv"),
                   "-fd", "1", "-trace_err", "-error_file", os.path.join(work, "uac_errors.log")]
        with open(os.path.join(work, "commands.txt"), "w") as f:
            f.write("gateway: " + " ".join(gw_cmd) + "\ncaller: " + " ".join(uac_cmd) + "\n")
            for p in flooders:
                f.write("flooder: " + " ".join(p.args) + "\n")
        log(f"{label}: {legit_total} calls to 112 at {a.legit_rate}/s, "
            f"flood from {a.sources} source(s) [{a.kinds if a.sources else '-'}] for {flood_s:.0f} s")
        procs["uac"] = subprocess.Popen(uac_cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(work, "uac.stderr"), "w"))
        sampler.sipp = sampler.sipp + [procs["uac"].pid]
        uac_rc = wait_or_stop(procs["uac"], guard_s, "caller SIPp")
        t_uac_end = time.monotonic()

        flood_stats = []
        for i, p in enumerate(flooders):
            try:
                out, _ = p.communicate(timeout=flood_s + 30)
            except subprocess.TimeoutExpired:
                stop(p, f"flooder {i}")
                out = p.stdout.read() if p.stdout else ""
            for line in (out or "").splitlines():
                if line.startswith("{"):
                    flood_stats.append(json.loads(line))
        # The flood's own length (it starts right after t0); without one, up to the last call.
        fl_elapsed = max([s["elapsed_s"] for s in flood_stats] or [0])
        t_flood_end = t0 + fl_elapsed if flooders else t_uac_end
        snmp1 = udp_snmp()
        load_end = os.getloadavg()

        # Let the call-log writer drain (and the 404 retransmissions end): until the log stops
        # growing for 3 s, 45 s at most.
        settle_deadline = time.monotonic() + 45
        last, still_since = log_bytes(db), time.monotonic()
        while time.monotonic() < settle_deadline:
            time.sleep(0.5)
            cur = log_bytes(db)
            if cur != last:
                last, still_since = cur, time.monotonic()
            elif time.monotonic() - still_since >= 3:
                break
        t_settled = time.monotonic()
        hwm_kb = proc_status(procs["gw"].pid, "VmHWM")
        sampler.done.set()
        sampler.join(timeout=5)
        with open(os.path.join(work, "samples.csv"), "w") as f:
            keys = list(sampler.rows[0])
            f.write(",".join(keys) + "\n")
            for r in sampler.rows:
                f.write(",".join(str(round(r[k] - t0, 2) if k == "t" else r[k]) for k in keys) + "\n")
        final = sampler.sample()

        gw_stop = stop(procs["gw"], "gateway", grace=60)
        stop(procs["uas"], "sipp uas", sig=signal.SIGUSR1)
        # What the run kept: the database once the WAL is checkpointed into it and truncated
        # (the WAL's few MB are reused in place, they are not growth).
        wal_at_stop = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0
        try:
            con = sqlite3.connect(db, timeout=60)
            con.execute("pragma wal_checkpoint(TRUNCATE)")
            con.close()
        except sqlite3.Error as e:
            log(f"checkpoint after the run failed: {e}")
        kept = log_bytes(db)

        # ---- results
        s0, s_flood_end = sampler.at(t0), sampler.at(t_flood_end)
        window = max(1e-3, s_flood_end["t"] - s0["t"])
        gw_cpu_s = ((s_flood_end["gw_ticks"] or 0) - (s0["gw_ticks"] or 0)) / HZ
        fl_cpu_s = (s_flood_end["flood_ticks"] - s0["flood_ticks"]) / HZ
        sipp_cpu_s = (s_flood_end["sipp_ticks"] - s0["sipp_ticks"]) / HZ
        sys_busy = (s_flood_end["sys_busy"] - s0["sys_busy"]) / max(1, s_flood_end["sys_total"] - s0["sys_total"])
        ncpu = os.cpu_count() or 1
        uac = sipp_stat_last(os.path.join(work, "uac_stat.csv"))
        uas = sipp_stat_last(os.path.join(work, "uas_stat.csv"))
        rtts = read_rtts(work)
        sent = sum(s["sent"] for s in flood_stats)
        stderr_path = os.path.join(work, "gw.stderr")
        lost = 0
        with open(stderr_path, errors="replace") as f:
            for line in f:
                if "record was lost" in line:
                    lost += 1
        minutes = window / 60
        grow_during = s_flood_end["log_bytes"] - s0["log_bytes"]
        grow_total = kept - s0["log_bytes"]
        dbq = query_log(db)
        agency_ok = int(uas.get("SuccessfulCall(C)", 0) or 0)
        result.update({
            "uac_rc": uac_rc,
            "legit_ok": int(uac.get("SuccessfulCall(C)", 0) or 0),
            "legit_failed": int(uac.get("FailedCall(C)", 0) or 0),
            "legit_retrans": int(uac.get("Retransmissions(C)", 0) or 0),
            "agency_ok": agency_ok, "agency_failed": int(uas.get("FailedCall(C)", 0) or 0),
            "bridged_pct": round(100.0 * agency_ok / legit_total, 2) if legit_total else None,
            "answered": len(rtts),
            "answer_ms": {f"p{q}": percentile(rtts, legit_total, q) for q in (50, 90, 99)}
            | {"max": round(rtts[-1], 1) if len(rtts) == legit_total and rtts else None},
            "flood": {"sent": sent, "rate_per_s": round(sent / fl_elapsed) if fl_elapsed else 0,
                      "per_process": flood_stats,
                      "cpu_pct": round(100 * fl_cpu_s / window, 1)},
            "gw_cpu_pct": round(100 * gw_cpu_s / window, 1),
            "gw_cpu_s": round(gw_cpu_s, 1),
            "sipp_cpu_pct": round(100 * sipp_cpu_s / window, 1),
            "sys_cpu_pct": round(100 * ncpu * sys_busy, 1),
            # CPU of processes that are not part of the run (other users of the machine)
            "other_cpu_pct": round(100 * ncpu * sys_busy - 100 * (gw_cpu_s + fl_cpu_s + sipp_cpu_s) / window, 1),
            "window_s": round(window, 1),
            "rss_peak_mb": round(hwm_kb / 1024, 1) if hwm_kb else None,
            "rss_end_mb": round((final["rss_kb"] or 0) / 1024, 1),
            "log_bytes_during": grow_during, "log_bytes_total": grow_total,
            "wal_bytes_at_stop": wal_at_stop,
            "gw_stop_s": gw_stop[0], "gw_killed_at_stop": gw_stop[1],
            "log_mb_per_min_during": round(grow_during / 1e6 / minutes, 2),
            "log_mb_per_min": round(grow_total / 1e6 / minutes, 2),
            "settle_s": round(t_settled - t_flood_end, 1),
            "log_records_lost": lost,
            "gw_stderr_bytes": os.path.getsize(stderr_path),
            "udp": {k: snmp1[k] - snmp0[k] for k in ("InDatagrams", "RcvbufErrors", "NoPorts")},
            "call_log": dbq,
            "loadavg_end": [round(x, 2) for x in load_end],
        })
        # The part of the growth that is not the legitimate calls' own, by bytes of verbatim
        # messages in the log (the file itself cannot say which page holds what).
        share = dbq.get("noncall_raw_share", 0.0)
        result["noncall_mb_per_min"] = round(result["log_mb_per_min"] * share, 2)
    finally:
        if sampler:
            sampler.done.set()
        for p in flooders:
            stop(p, "flooder")
        for name in ("uac", "gw", "uas"):
            stop(procs.get(name), name, sig=signal.SIGUSR1 if name != "gw" else signal.SIGTERM)
        if not a.keep:
            for pat in ("siaga.db*", "rec"):
                for p in glob.glob(os.path.join(work, pat)):
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
            # The gateway's stderr can be large under a flood: keep its tail only.
            sp = os.path.join(work, "gw.stderr")
            if os.path.exists(sp) and os.path.getsize(sp) > 1 << 20:
                with open(sp, "rb") as f:
                    f.seek(-(1 << 20), os.SEEK_END)
                    tail = f.read()
                with open(sp, "wb") as f:
                    f.write(tail)
    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print_table([result])
    return 0


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


LEGEND = """flood/s: datagrams/s the flood offered (all sources); fl%, gw%: CPU of the flood generator and of
the gateway, % of one core, over the flood; oth%: CPU of processes outside the run (200 = the box).
bridged%: legitimate calls the agency answered and completed; drop%: UDP datagrams the kernel
dropped on full receive buffers (the gateway's above all), % of all it delivered; pNNms:
INVITE->200 as the caller saw it (SIPp, 1 ms resolution), '-' = that percentile falls on calls
never answered. log MB/min: the call log's growth (database after a WAL checkpoint) per minute
of flood, including what the gateway still wrote after it; noncall: the part of it from
messages of no emergency call (by bytes logged); lost: call-log records the gateway dropped
(queue full); rssMB: peak RSS (VmHWM); load1: 1-min load average at the start of the run."""


def udp_drop_pct(r):
    """Datagrams the kernel dropped because a receiving socket was full, % of all delivered."""
    u = r.get("udp") or {}
    seen = u.get("InDatagrams", 0) + u.get("RcvbufErrors", 0)
    return round(100 * u.get("RcvbufErrors", 0) / seen, 1) if seen else None


def print_table(results):
    cols = [("label", 16), ("src", 4), ("flood/s", 8), ("fl%", 5), ("calls", 6), ("bridged%", 8),
            ("drop%", 5), ("p50ms", 6), ("p90ms", 6), ("p99ms", 7), ("log MB/min", 10), ("noncall", 8),
            ("lost", 7), ("rssMB", 7), ("gw%", 5), ("oth%", 5), ("load1", 5)]
    print(" ".join(f"{n:>{w}}" for n, w in cols))
    for r in results:
        am = r.get("answer_ms", {})
        row = [r.get("label"), r.get("sources"), r.get("flood", {}).get("rate_per_s"),
               r.get("flood", {}).get("cpu_pct"), r.get("legit_calls"), r.get("bridged_pct"),
               udp_drop_pct(r), am.get("p50"), am.get("p90"), am.get("p99"), r.get("log_mb_per_min"),
               r.get("noncall_mb_per_min"), r.get("log_records_lost"), r.get("rss_peak_mb"),
               r.get("gw_cpu_pct"), r.get("other_cpu_pct"), (r.get("loadavg_start") or [None])[0]]
        print(" ".join(f"{fmt(v):>{w}}" for v, (_, w) in zip(row, cols)))


def print_legend():
    print(LEGEND)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--gw", required=True)
    r.add_argument("--gen", required=True)
    r.add_argument("--plan", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--label", default="")
    r.add_argument("--sources", type=int, default=1)
    r.add_argument("--kinds", default="garbage,options,invite")
    r.add_argument("--duration", type=float, default=60)
    r.add_argument("--legit-rate", type=float, default=10)
    r.add_argument("--hold-ms", type=int, default=1000)
    r.add_argument("--warmup", type=float, default=2)
    r.add_argument("--flood-rate", type=float, default=0, help="datagrams/s in all; 0 = as fast as they go")
    r.add_argument("--flood-procs", type=int, default=1)
    r.add_argument("--flood-max-count", type=int, default=2_000_000_000)
    r.add_argument("--recv-timeout", type=int, default=40)
    r.add_argument("--nice", type=int, default=-10, help="gateway and SIPp")
    r.add_argument("--flood-nice", type=int, default=0)
    r.add_argument("--keep", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--out", required=True)
    t.add_argument("--last", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "table":
        path = os.path.join(a.out, "results.jsonl")
        rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
        print_table(rows[-a.last:] if a.last else rows)
        print_legend()
        return 0
    if not 0 <= a.sources <= 20:
        sys.exit("--sources must be 0..20 (127.0.0.11 .. 127.0.0.30)")
    if a.duration <= 0 or a.duration > 3600:
        sys.exit("--duration must be in (0, 3600] s")
    os.makedirs(a.out, exist_ok=True)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
