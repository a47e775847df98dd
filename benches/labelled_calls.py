#!/usr/bin/env python3
"""The call-class rules' accuracy on the labelled-call generator's run (benches/labelled_calls.sh).

Reads the gateway's call log: each call's label (the X-Bench-Label header of its verbatim
INVITE), its current class, the rules' reasons and its measured signals. Prints the confusion
table, the accuracy per label and overall, every misclassified call with the signals that
explain it, and the count of genuine calls given a class that lowers their priority (the
target is zero). Standard library only.

    python3 benches/labelled_calls.py siaga.db [--json]
"""
import json
import re
import sqlite3
import sys
from collections import Counter, defaultdict

LABEL = re.compile(rb"X-Bench-Label:\s*(\S+)", re.IGNORECASE)


def calls(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        """SELECT c.id, c.caller_number, cc.class, k.reasons,
                  s.digits, s.answered_ms, s.agency_talk_ms, s.voice_frames, s.speech_frames,
                  s.longest_speech_ms, s.voiced_frames, s.longest_voiced_ms,
                  (SELECT raw FROM sip_messages m WHERE m.call = c.id AND m.direction = 'in'
                     AND m.first_line LIKE 'INVITE %' ORDER BY m.id LIMIT 1)
           FROM calls c
           LEFT JOIN call_current_class cc ON cc.call = c.id
           LEFT JOIN call_classes k ON k.call = c.id
           LEFT JOIN call_signals s ON s.call = c.id
           ORDER BY c.id"""
    ).fetchall()
    out = []
    for (cid, number, cls, reasons, digits, answered, talk, frames, speech, longest, voiced,
         longest_voiced, raw) in rows:
        m = LABEL.search(raw or b"")
        out.append({
            "call": cid,
            "number": number,
            "label": m.group(1).decode() if m else None,
            "class": cls or "unclassified",
            "rule": (json.loads(reasons)[0]["rule"] if reasons else None),
            "signals": {
                "digits": digits, "answered_ms": answered, "agency_talk_ms": talk,
                "voice_frames": frames, "speech_frames": speech, "longest_speech_ms": longest,
                "voiced_frames": voiced, "longest_voiced_ms": longest_voiced,
            },
        })
    return out


# Classes that lower a caller's priority or mark the call as false.
LOWERING = {"silent", "abandoned", "pocket_or_noise", "repeat", "prank"}


def main():
    db = sys.argv[1]
    as_json = "--json" in sys.argv[2:]
    rows = [r for r in calls(db) if r["label"]]
    confusion = defaultdict(Counter)
    for r in rows:
        confusion[r["label"]][r["class"]] += 1
    wrong = [r for r in rows if r["class"] != r["label"]]
    genuine_lowered = [r for r in rows if r["label"] == "genuine" and r["class"] in LOWERING]
    per_label = {
        label: (counts[label], sum(counts.values())) for label, counts in sorted(confusion.items())
    }
    total_right = sum(right for right, _ in per_label.values())
    summary = {
        "calls": len(rows),
        "right": total_right,
        "accuracy_percent": round(100.0 * total_right / len(rows), 1) if rows else None,
        "per_label": {k: {"right": a, "calls": b} for k, (a, b) in per_label.items()},
        "confusion": {k: dict(v) for k, v in sorted(confusion.items())},
        "genuine_given_a_lowering_class": len(genuine_lowered),
        "misclassified": wrong,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    classes = sorted({c for counts in confusion.values() for c in counts})
    width = max(len(c) for c in classes + ["label \\ class"]) + 2
    print("label \\ class".ljust(16) + "".join(c.rjust(width) for c in classes))
    for label, counts in sorted(confusion.items()):
        print(label.ljust(16) + "".join(str(counts.get(c, 0)).rjust(width) for c in classes))
    print()
    for label, (right, n) in per_label.items():
        print(f"{label:16} {right:4} / {n:<4} {100.0 * right / n:5.1f} %")
    print(f"{'overall':16} {total_right:4} / {len(rows):<4} {summary['accuracy_percent']:5.1f} %")
    print(f"genuine calls given a class that lowers their priority: {len(genuine_lowered)}")
    if wrong:
        print("\nmisclassified (label → class, deciding rule, signals):")
        for r in wrong:
            s = r["signals"]
            print(f"  call {r['call']:4} {r['label']} → {r['class']} ({r['rule']}): "
                  f"answered {s['answered_ms']} ms, keys {s['digits']}, agency talk "
                  f"{s['agency_talk_ms']} ms, voice {s['speech_frames']}/{s['voice_frames']} "
                  f"frames with speech, longest run {s['longest_speech_ms']} ms, "
                  f"{s['voiced_frames']} voiced, longest voiced run {s['longest_voiced_ms']} ms")


if __name__ == "__main__":
    main()
