//! Monitoring end to end: SIPp calls through the real gateway, then `/metrics` scraped over
//! HTTP and held against the call log; `/healthz`, `/readyz`; the Grafana dashboard's
//! queries use only metrics the gateway exports.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    AgencyPorts, Gateway, assert_sipp_ok, finish_agency, http_get as get, sipp_agency,
    sipp_caller_with_voice, test_plan, wait_until,
};

/// Every sample of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `name` whose labels contain all of `labels` (`k="v"`).
fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name && labels.iter().all(|l| rest.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

fn count(db: &rusqlite::Connection, sql: &str) -> f64 {
    db.query_row(sql, [], |r| r.get::<_, i64>(0))
        .expect("count") as f64
}

#[test]
fn metrics_agree_with_the_call_log_after_a_sipp_run() {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8")]);
    let http = gw.http.expect("the gateway prints its HTTP address");
    assert_eq!(get(http, "/healthz"), (200, "ok\n".to_owned()));
    let (status, ready) = get(http, "/readyz");
    assert_eq!(status, 200, "{ready}");

    // Two callers press 1 and talk to the police; one hangs up in the menu.
    let police = sipp_agency("agency_answer.xml", ports.police, &["-m", "2"]);
    let out = sipp_caller_with_voice(
        gw.udp,
        "uac_talk.xml",
        &["-s", "112", "-key", "digit", "1", "-m", "2"],
    );
    assert_sipp_ok(&out, "two callers to the police");
    finish_agency(police, "police answers twice");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "1500"],
    );
    assert_sipp_ok(&out, "a caller who hangs up in the menu");

    // The counters follow the engine's records as they are written, the gauges are read each
    // second: poll until all three calls have ended, their recordings are closed and no call
    // is left.
    let scrape = || samples(&get(http, "/metrics").1);
    wait_until(
        "three calls ended in /metrics",
        Duration::from_secs(20),
        || {
            let m = scrape();
            sum(&m, "siaga_calls_ended_total", &[]) == 3.0
                && sum(&m, "siaga_recordings_finished_total", &[]) == 3.0
                && sum(&m, "siaga_calls_active", &[]) == 0.0
        },
    );
    let m = scrape();
    let db = gw.db();
    assert_eq!(
        sum(&m, "siaga_calls_started_total", &["kind=\"emergency\""]),
        count(&db, "SELECT count(*) FROM calls WHERE kind = 'emergency'")
    );
    assert_eq!(
        sum(&m, "siaga_calls_answered_total", &[]),
        count(
            &db,
            "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL"
        )
    );
    // Every end reason of the log, with its count.
    let reasons: Vec<(String, i64)> = db
        .prepare("SELECT end_reason, count(*) FROM calls GROUP BY end_reason")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for (reason, n) in &reasons {
        assert_eq!(
            sum(
                &m,
                "siaga_calls_ended_total",
                &[&format!("reason=\"{reason}\"")]
            ),
            *n as f64,
            "{reason}"
        );
    }
    // The two police calls: answered attempts by route and target, with answer times.
    let answered = count(
        &db,
        "SELECT count(*) FROM call_events WHERE kind = 'agency_answered'",
    );
    assert_eq!(answered, 2.0);
    let target = format!("target=\"sip:polisi@127.0.0.1:{}\"", ports.police);
    assert_eq!(
        sum(
            &m,
            "siaga_agency_attempts_total",
            &["route=\"police\"", "outcome=\"answered\"", &target]
        ),
        answered
    );
    assert_eq!(
        sum(
            &m,
            "siaga_agency_answer_seconds_count",
            &["route=\"police\""]
        ),
        answered
    );
    assert_eq!(
        sum(&m, "siaga_calls_ended_total", &["route=\"police\""]),
        2.0
    );
    // SIP at the transport: three INVITEs in from callers, two out to the police.
    assert_eq!(
        sum(
            &m,
            "siaga_sip_requests_total",
            &["direction=\"in\"", "method=\"INVITE\""]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &m,
            "siaga_sip_requests_total",
            &["direction=\"out\"", "method=\"INVITE\""]
        ),
        2.0
    );
    // Audio went through: relayed as it came, and nothing is live any more.
    assert!(sum(&m, "siaga_rtp_packets_received_total", &[]) > 100.0);
    assert!(sum(&m, "siaga_rtp_packets_sent_total", &["kind=\"relayed\""]) > 100.0);
    assert!(sum(&m, "siaga_rtp_relay_delay_seconds_count", &[]) > 100.0);
    assert!(sum(&m, "siaga_recording_bytes_total", &[]) > 0.0);
    assert_eq!(sum(&m, "siaga_calls_active", &[]), 0.0);
    assert!(sum(&m, "process_resident_memory_bytes", &[]) > 0.0);

    // The dashboard shipped in deploy/grafana uses only series this gateway exports.
    let text = get(http, "/metrics").1;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/siaga.json"),
        )
        .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let mut used = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            used.extend(
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("siaga_") || w.starts_with("process_"))
                    .map(str::to_owned),
            );
        }
    }
    assert!(used.len() > 15, "{used:?}");
    for name in used {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "the dashboard uses {name}, which /metrics does not have"
        );
    }

    gw.stop();
}

#[test]
fn a_draining_gateway_is_not_ready_but_alive_and_finishes_its_call() {
    let mut gw = Gateway::start(&[]);
    let http = gw.http.expect("the gateway prints its HTTP address");
    let target = gw.udp;
    // A caller who stays 6 s in the menu.
    let caller = std::thread::spawn(move || {
        common::sipp(
            target,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "6000"],
        )
    });
    wait_until(
        "the call is live in /metrics",
        Duration::from_secs(10),
        || {
            sum(
                &samples(&get(http, "/metrics").1),
                "siaga_calls_active",
                &[],
            ) >= 1.0
        },
    );
    assert_eq!(get(http, "/readyz").0, 200);
    // SIGTERM: the gateway drains (new calls get 503) and says so to a load balancer.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status();
    wait_until(
        "/readyz turns 503 while draining",
        Duration::from_secs(5),
        || {
            let (status, body) = get(http, "/readyz");
            status == 503 && body.contains("taking_calls FAIL")
        },
    );
    assert_eq!(get(http, "/healthz").0, 200, "draining is not dead");
    let out = caller.join().expect("caller thread");
    assert_sipp_ok(&out, "the live call finishes during the drain");
    gw.stop();
    assert_eq!(
        common::end_reasons(&gw.db()),
        vec![("abandoned_in_ivr".to_owned(), 1)]
    );
}
