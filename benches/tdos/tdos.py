#!/usr/bin/env python3
"""One run of the TDoS benchmark (driven by benches/tdos.sh), and the results table.

  tdos.py run --gw BIN --plan PLAN --out DIR --media DIR [--sources N --numbers few|many
              --kind silent|noise --defence on|off ...]
  tdos.py table --out DIR [--last N]

A run: a fresh gateway (its own empty call log; 127.0.0.1 is its carrier's SBC, a trusted
source), SIPp desks for the police (127.0.0.1:5081) and the call-takers (5080) that answer
every call and talk until the gateway hangs up, and legitimate 112 callers (SIPp from
127.0.0.1, a new number each) at --legit-rate calls/s: each talks (recorded speech), presses 1
by SIP INFO 2 s after the answer and stays --legit-hold-ms, so that it talks about 10 s to the
police. With --sources N > 0, a flood of calls to 112 from N other addresses (127.0.0.11 and
up, one SIPp each) at --flood-factor times the legitimate rate in all, starting --warmup s
before the legitimate calls and lasting until they have all ended; each flood call is silent
(no audio at all) or steady loud noise, presses nothing and hangs up after --flood-hold-ms;
its numbers are few (--numbers few: 5 per source, over and over) or many (a new random one per
call). --defence off runs the same with the plan's challenge turned off (attacks are still
detected), to show what the flood would take without it.

Results, from the callers' SIPp (INVITE→200 as each caller saw it) and the call log: the share
of legitimate calls the police answered, their answer-time percentiles, how many flood calls a
call-taker answered (and for how long), the challenges, the gateway's CPU and RSS. Every
process it starts is stopped by PID, every wait has a deadline. One JSON line per run is
appended to DIR/results.jsonl.
"""
import argparse, datetime, glob, json, os, random, resource, shutil, signal, sqlite3, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "flood"))
from flood import (Sampler, percentile, proc_status, read_rtts, sipp_stat_last, stop,  # noqa: E402
                   wait_listening, wait_or_stop)

TEMPLATE = os.path.join(HERE, "..", "sipp", "uac_labelled.xml")
AGENCY = os.path.join(HERE, "..", "..", "tests", "sipp", "agency_answer.xml")
GW = "127.0.0.1:5060"
POLICE_PORT, TAKER_PORT = 5081, 5080
LEGIT_PREFIX, FLOOD_PREFIX = "+62812", "+62899"
HZ = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[tdos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def scenario(path, audio, digit, hold_ms):
    """A caller scenario from the labelled generator's template."""
    audio_xml = f'<nop><action><exec rtp_stream="{audio}.alaw,-1,8"/></action></nop>' if audio else ""
    digit_xml = ""
    if digit:
        digit_xml = f"""<pause milliseconds="2000"/>
  <send retrans="500" start_txn="info"><![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: "Labelled caller" <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:112@127.0.0.1:5060>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]></send>
  <recv response="200" response_txn="info"/>"""
    text = open(TEMPLATE).read()
    for key, value in (("@REQUEST_URI@", "sip:112@127.0.0.1:5060"), ("@AUDIO@", audio_xml),
                       ("@DIGIT@", digit_xml), ("@HOLD_MS@", str(hold_ms))):
        text = text.replace(key, value)
    with open(path, "w") as f:
        f.write(text)


def numbers_file(path, numbers):
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for n in numbers:
            f.write(f"{n};\n")


def more_files(limit=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))


def query_log(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    q = lambda sql, *a: con.execute(sql, a).fetchone()[0]
    out = {}
    for who, prefix in (("legit", LEGIT_PREFIX), ("flood", FLOOD_PREFIX)):
        like = prefix + "%"
        talk = con.execute(
            "SELECT count(*), coalesce(sum(s.agency_talk_ms), 0) FROM calls c JOIN call_signals s ON s.call = c.id "
            "WHERE c.caller_number LIKE ? AND s.agency_talk_ms IS NOT NULL", (like,)).fetchone()
        out[who] = {
            "logged": q("SELECT count(*) FROM calls WHERE caller_number LIKE ?", like),
            "recorded": q("SELECT count(*) FROM calls WHERE caller_number LIKE ? AND recording_sha256 IS NOT NULL", like),
            "agency_answered": talk[0],
            "agency_talk_s": round(talk[1] / 1000, 1),
            "police_answered": q(
                "SELECT count(DISTINCT e.call) FROM call_events e JOIN calls c ON c.id = e.call "
                "WHERE c.caller_number LIKE ? AND e.kind = 'agency_answered' AND e.detail LIKE '%polisi%'", like),
            "challenge": dict(con.execute(
                "SELECT e.kind, count(*) FROM call_events e JOIN calls c ON c.id = e.call "
                "WHERE c.caller_number LIKE ? AND e.kind LIKE 'challenge_%' GROUP BY e.kind", (like,)).fetchall()),
        }
    out["attacks"] = [r[0] for r in con.execute(
        "SELECT detail FROM gateway_events WHERE kind IN ('attack_started', 'attack_ended') ORDER BY id").fetchall()]
    con.close()
    return out


def run(a):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    label = a.label or ("baseline" if not a.sources else
                        f"{a.kind}-{a.sources}src-{a.numbers}" + ("" if a.defence == "on" else "-nodefence"))
    work = os.path.join(a.out, "runs", f"{stamp}-{label}")
    os.makedirs(work)
    for f in os.listdir(a.media):
        shutil.copy(os.path.join(a.media, f), work)
    db = os.path.join(work, "siaga.db")
    legit_total = int(round(a.legit_rate * a.duration))
    flood_rate = a.legit_rate * a.flood_factor if a.sources else 0
    flood_s = a.warmup + a.duration + a.legit_hold_ms / 1000 + 5
    flood_total = int(flood_rate * flood_s)
    guard_s = flood_s + 120
    plan = a.plan
    if a.defence == "off":
        plan = os.path.join(work, "plan.toml")
        text = open(a.plan).read().replace('challenge_prompt = "challenge"', 'challenge_prompt = "none"')
        text = text.replace('prompt_dir = "../dialplans/prompts"',
                            f'prompt_dir = "{os.path.abspath(os.path.join(os.path.dirname(a.plan), "../dialplans/prompts"))}"')
        open(plan, "w").write(text)
    with open(os.path.join(work, "siaga.toml"), "w") as f:
        f.write('[limits]\ntrusted_sources = ["127.0.0.1/32"]   # the carrier SBC the legitimate calls come through\n')

    # Scenarios and numbers.
    scenario(os.path.join(work, "legit.xml"), "speech", "1", a.legit_hold_ms)
    scenario(os.path.join(work, "flood.xml"), "noise" if a.kind == "noise" else "", "", a.flood_hold_ms)
    numbers_file(os.path.join(work, "legit.csv"), (f"{LEGIT_PREFIX}{10000000 + i}" for i in range(legit_total)))
    rng = random.Random(stamp)
    per_source = flood_total // max(1, a.sources) + 1
    for s in range(a.sources):
        if a.numbers == "few":
            nums = [f"{FLOOD_PREFIX}{5000000 + s * 10 + k}" for k in range(5)]
        else:
            nums = [f"{FLOOD_PREFIX}{rng.randrange(10**8):08d}" for _ in range(per_source)]
        numbers_file(os.path.join(work, f"flood{s}.csv"), nums)

    result = {"label": label, "started": stamp, "sources": a.sources, "numbers": a.numbers if a.sources else "",
              "kind": a.kind if a.sources else "", "defence": a.defence, "duration_s": a.duration,
              "legit_rate": a.legit_rate, "legit_calls": legit_total, "legit_hold_ms": a.legit_hold_ms,
              "flood_rate": flood_rate, "flood_hold_ms": a.flood_hold_ms if a.sources else 0,
              "flood_s": round(flood_s, 1) if a.sources else 0,
              "loadavg_start": [round(x, 2) for x in os.getloadavg()], "workdir": work}
    procs, flooders, sampler = {}, [], None
    nice = ["nice", "-n", str(a.nice)]
    try:
        gw_cmd = nice + [a.gw, "serve", "--config", os.path.join(work, "siaga.toml"), "--listen", f"udp:{GW}",
                         "--http", "off", "--db", db, "--recordings", os.path.join(work, "rec"),
                         "--rtp-ports", "30000-49999", "--dialplan", plan]
        procs["gw"] = subprocess.Popen(gw_cmd, cwd=work, stdin=subprocess.DEVNULL, preexec_fn=more_files,
                                       stdout=open(os.path.join(work, "gw.stdout"), "w"),
                                       stderr=open(os.path.join(work, "gw.stderr"), "w"))
        wait_listening(work, procs["gw"])

        for name, port, mp, cp in (("police", POLICE_PORT, 20000, 8891), ("takers", TAKER_PORT, 50000, 8892)):
            procs[name] = subprocess.Popen(
                nice + ["sipp", "-sf", AGENCY, "-i", "127.0.0.1", "-p", str(port), "-mp", str(mp), "-cp", str(cp),
                        "-nostdin", "-aa", "-default_behaviors", "all,-abortunexp", "-max_socket", "20000",
                        "-trace_stat", "-stf", os.path.join(work, f"{name}_stat.csv"), "-fd", "1",
                        "-trace_err", "-error_file", os.path.join(work, f"{name}_errors.log"),
                        "-timeout", f"{int(guard_s + 60)}s"],
                cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=more_files,
                stderr=open(os.path.join(work, f"{name}.stderr"), "w"))

        sampler = Sampler(procs["gw"].pid, db, guard_s + 120)
        sampler.sipp = [procs["police"].pid, procs["takers"].pid]
        sampler.start()
        t0 = time.monotonic()

        # The flood: one SIPp per source address, the rate shared equally.
        if a.sources:
            span = 9000 // a.sources  # media ports 10000-18999, 4 per call
            conc = int(flood_rate / a.sources * a.flood_hold_ms / 1000 * 1.5) + 50
            for s in range(a.sources):
                ip = f"127.0.0.{11 + s}"
                cmd = nice + ["sipp", GW, "-sf", "flood.xml", "-inf", f"flood{s}.csv", "-i", ip, "-p", "5070",
                              "-mp", str(10000 + s * span), "-cp", str(8900 + s),
                              "-r", f"{flood_rate / a.sources:g}", "-m", str(int(flood_rate / a.sources * flood_s)),
                              "-l", str(conc), "-aa", "-nostdin", "-max_socket", "20000",
                              "-timeout", f"{int(guard_s)}s", "-recv_timeout", "40s",
                              "-trace_stat", "-stf", f"flood{s}_stat.csv", "-fd", "1",
                              "-trace_rtt", "-rtt_freq", "1",
                              "-trace_err", "-error_file", f"flood{s}_errors.log"]
                p = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(work, f"flood{s}.stderr"), "w"), preexec_fn=more_files)
                flooders.append(p)
            sampler.flooders = [p.pid for p in flooders]
            time.sleep(a.warmup)  # the legitimate calls start into a running flood

        uac_cmd = nice + ["sipp", GW, "-sf", "legit.xml", "-inf", "legit.csv", "-i", "127.0.0.1", "-p", "5070",
                          "-mp", "24000", "-cp", "8890", "-r", str(a.legit_rate), "-m", str(legit_total),
                          "-l", str(int(a.legit_rate * a.legit_hold_ms / 1000 * 2) + 50), "-aa", "-nostdin",
                          "-max_socket", "20000", "-timeout", f"{int(guard_s)}s", "-recv_timeout", "40s",
                          "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", "legit_stat.csv", "-fd", "1",
                          "-trace_err", "-error_file", "legit_errors.log"]
        with open(os.path.join(work, "commands.txt"), "w") as f:
            f.write("gateway: " + " ".join(gw_cmd) + "\ncaller: " + " ".join(uac_cmd) + "\n")
            for p in flooders:
                f.write("flooder: " + " ".join(p.args) + "\n")
        log(f"{label}: {legit_total} legitimate calls at {a.legit_rate}/s; flood "
            f"{flood_rate:g}/s from {a.sources} source(s), {a.kind}, {a.numbers} numbers, defence {a.defence}")
        procs["uac"] = subprocess.Popen(uac_cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(work, "legit.stderr"), "w"), preexec_fn=more_files)
        sampler.sipp = sampler.sipp + [procs["uac"].pid]
        uac_rc = wait_or_stop(procs["uac"], guard_s, "legitimate callers' SIPp")
        t_legit_end = time.monotonic()
        for i, p in enumerate(flooders):
            wait_or_stop(p, max(5, flood_s + 60 - (time.monotonic() - t0)), f"flooder {i}")
        t_flood_end = time.monotonic()
        hwm_kb = proc_status(procs["gw"].pid, "VmHWM")
        sampler.done.set()
        sampler.join(timeout=5)
        gw_stop = stop(procs["gw"], "gateway", grace=60)
        for name in ("police", "takers"):
            stop(procs[name], name, sig=signal.SIGUSR1)

        s0, s1 = sampler.at(t0), sampler.at(t_flood_end)
        window = max(1e-3, s1["t"] - s0["t"])
        gw_cpu_s = ((s1["gw_ticks"] or 0) - (s0["gw_ticks"] or 0)) / HZ
        sys_busy = (s1["sys_busy"] - s0["sys_busy"]) / max(1, s1["sys_total"] - s0["sys_total"])
        legit = sipp_stat_last(os.path.join(work, "legit_stat.csv"))
        answered = read_rtts(work, "legit")
        flood_stats = [sipp_stat_last(os.path.join(work, f"flood{s}_stat.csv")) for s in range(a.sources)]
        flood_rtts = read_rtts(work, "flood")
        dbq = query_log(db)
        flood_placed = sum(int(s.get("OutgoingCall(C)", 0) or 0) for s in flood_stats)
        result.update({
            "uac_rc": uac_rc,
            "legit_ok": int(legit.get("SuccessfulCall(C)", 0) or 0),
            "legit_failed": int(legit.get("FailedCall(C)", 0) or 0),
            "legit_answered": len(answered),
            "legit_police_pct": round(100.0 * dbq["legit"]["police_answered"] / legit_total, 2),
            "legit_answer_ms": {f"p{q}": percentile(answered, legit_total, q) for q in (50, 90, 99)}
            | {"max": round(answered[-1], 1) if answered else None},
            "flood_placed": flood_placed,
            "flood_answered": len(flood_rtts),
            "flood_answer_ms": {f"p{q}": percentile(flood_rtts, len(flood_rtts), q) for q in (50, 99)},
            "flood_to_calltaker": dbq["flood"]["agency_answered"],
            "flood_to_calltaker_pct": round(100.0 * dbq["flood"]["agency_answered"] / flood_placed, 2) if flood_placed else None,
            "flood_calltaker_s": dbq["flood"]["agency_talk_s"],
            "call_log": dbq,
            "gw_cpu_pct": round(100 * gw_cpu_s / window, 1),
            "sys_cpu_pct": round(100 * (os.cpu_count() or 1) * sys_busy, 1),
            "window_s": round(window, 1),
            "rss_peak_mb": round(hwm_kb / 1024, 1) if hwm_kb else None,
            "gw_stop_s": gw_stop[0], "gw_killed_at_stop": gw_stop[1],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        })
    finally:
        if sampler:
            sampler.done.set()
        for p in flooders:
            stop(p, "flooder", sig=signal.SIGUSR1)
        for name in ("uac", "gw", "police", "takers"):
            stop(procs.get(name), name, sig=signal.SIGUSR1 if name != "gw" else signal.SIGTERM)
        if not a.keep:
            for pat in ("siaga.db*", "rec", "*.alaw"):
                for p in glob.glob(os.path.join(work, pat)):
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    log(f"{label}: police answered {result['legit_police_pct']} % of legitimate calls, answer p99 "
        f"{result['legit_answer_ms']['p99']} ms; {result['flood_to_calltaker']} of {flood_placed} flood calls "
        f"reached a call-taker")


def table(a):
    rows = [json.loads(l) for l in open(os.path.join(a.out, "results.jsonl"))]
    if a.last:
        rows = rows[-a.last:]
    print("| run | flood: calls/s, sources, numbers, kind | defence | legitimate calls the police answered "
          "| their answer time p50 / p90 / p99 / max, ms | flood calls placed | flood calls a call-taker answered "
          "| call-takers' time on them | gateway CPU, peak RSS | machine CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ms = r["legit_answer_ms"]
        flooded = r["sources"] > 0
        flood = f"{r['flood_rate']:g}/s, {r['sources']}, {r['numbers']}, {r['kind']}" if flooded else "none"
        placed = r["flood_placed"] if flooded else "-"
        taker = f"{r['flood_to_calltaker']} ({r['flood_to_calltaker_pct']} %)" if flooded else "-"
        taker_s = f"{r['flood_calltaker_s']} s" if flooded else "-"
        print(f"| {r['label']} | {flood} | {r['defence'] if flooded else '-'} "
              f"| {r['call_log']['legit']['police_answered']}/{r['legit_calls']} ({r['legit_police_pct']} %) "
              f"| {ms['p50']} / {ms['p90']} / {ms['p99']} / {ms['max']} | {placed} | {taker} | {taker_s} "
              f"| {r['gw_cpu_pct']} %, {r['rss_peak_mb']} MB | {r['sys_cpu_pct']} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--gw", required=True)
    r.add_argument("--plan", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--media", required=True, help="directory with speech.alaw, noise.alaw, agency_8k.alaw")
    r.add_argument("--label", default="")
    r.add_argument("--sources", type=int, default=0)
    r.add_argument("--numbers", choices=("few", "many"), default="many")
    r.add_argument("--kind", choices=("silent", "noise"), default="silent")
    r.add_argument("--defence", choices=("on", "off"), default="on")
    r.add_argument("--duration", type=float, default=40, help="s of legitimate call starts")
    r.add_argument("--legit-rate", type=float, default=10)
    r.add_argument("--legit-hold-ms", type=int, default=16000)
    r.add_argument("--flood-factor", type=float, default=10)
    r.add_argument("--flood-hold-ms", type=int, default=18000)
    r.add_argument("--warmup", type=float, default=5)
    r.add_argument("--nice", type=int, default=-10)
    r.add_argument("--keep", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("--out", required=True)
    t.add_argument("--last", type=int, default=0)
    a = ap.parse_args()
    run(a) if a.cmd == "run" else table(a)


if __name__ == "__main__":
    main()
