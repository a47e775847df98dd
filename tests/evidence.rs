//! Evidence through the whole gateway (issue 11 items 2, 3, 4 and 6): real SIPp calls fill
//! the call log — one abandoned in the menu, one answered by a SIPp police desk, one more —
//! then the CLI finds them by its filters, paging and i3 ids; an evidence package verifies on
//! a copy moved elsewhere and fails once a WAV byte, the manifest or the signature changes;
//! retention deletes exactly the old unheld recordings and the chain still verifies; and a
//! WAV byte, an access-trail row or a deleted call row each make `siaga audit verify` fail
//! naming that entry.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, test_plan};

/// `siaga ARGS` (no --db added): (success, stdout, stderr).
fn siaga(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siaga"))
        .args(args)
        .output()
        .expect("run siaga");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(gw: &Gateway, args: &[&str]) -> Vec<i64> {
    let mut args = args.to_vec();
    args.insert(0, "list");
    gw.calls_json(&args)
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_i64().expect("id"))
        .collect()
}

/// `siaga audit verify`: (ok, first line).
fn audit(db: &Path) -> (bool, String) {
    let (ok, out, _) = siaga(&["audit", "verify", "--db", db.to_str().expect("utf8")]);
    (ok, out.lines().next().unwrap_or_default().to_owned())
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Caller 1 hangs up in the 112 menu after 1 s; caller 2 dials 110 and is answered by a SIPp
/// police desk, on the line `police_ms`.
fn menu_call_then_police_call(gw: &Gateway, dir: &Path, ports: &AgencyPorts, police_ms: &str) {
    let run = |number: &str, args: &[&str], what: &str| {
        let path = common::scenario_from_number(dir, "uac_call.xml", number);
        let out = gw.sipp(path.to_str().expect("utf8 path"), false, args);
        assert_sipp_ok(&out, what);
    };
    run(
        "+6281100000001",
        &["-s", "112", "-m", "1", "-d", "1000"],
        "caller 1",
    );
    let police = sipp_agency("agency_answer.xml", ports.police, &["-m", "1"]);
    run(
        "+6281100000002",
        &["-s", "110", "-m", "1", "-d", police_ms],
        "caller 2 to the police",
    );
    finish_agency(police, "police answers");
}

#[test]
fn calls_are_found_exported_verified_swept_and_tampering_is_named() {
    let ports = AgencyPorts::new();
    let dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(dir.path(), &ports, &[]);
    let mut gw = Gateway::start(&["--dialplan", plan.to_str().expect("utf8 path")]);
    let run = |scenario: &str, number: &str, args: &[&str], what: &str| {
        let path = common::scenario_from_number(dir.path(), scenario, number);
        let out = gw.sipp(path.to_str().expect("utf8 path"), false, args);
        assert_sipp_ok(&out, what);
    };
    // 1: 112, hangs up in the menu; 2: 110, answered by the police desk, on the line 4 s.
    menu_call_then_police_call(&gw, dir.path(), &ports, "4000");
    // 3: 112 again, 2 s.
    run(
        "uac_call.xml",
        "+6281100000003",
        &["-s", "112", "-m", "1", "-d", "2000"],
        "caller 3",
    );
    // A graceful stop seals every ended call in the chain.
    gw.stop();
    let db = gw.db_path();
    let db_arg = db.to_str().expect("utf8").to_owned();

    // --- item 2: filters, paging, i3 ids, outcome, legs ---
    assert_eq!(ids(&gw, &[]), [3, 2, 1]);
    assert_eq!(ids(&gw, &["--caller", "0811-0000-0001"]), [1]);
    assert_eq!(ids(&gw, &["--caller", "+6281100000003"]), [3]);
    assert_eq!(ids(&gw, &["--dialled", "110"]), [2]);
    assert_eq!(ids(&gw, &["--dialled", "112"]), [3, 1]);
    assert_eq!(ids(&gw, &["--route", "police"]), [2]);
    assert_eq!(ids(&gw, &["--answered"]), [2]);
    assert_eq!(ids(&gw, &["--unanswered"]), [3, 1]);
    assert_eq!(ids(&gw, &["--min-secs", "3.5"]), [2]);
    assert_eq!(
        ids(
            &gw,
            &["--end", "abandoned_in_ivr", "--caller", "081100000001"]
        ),
        [1]
    );
    assert_eq!(
        ids(&gw, &["--since", "2000-01-01", "--until", "2000-01-02"]),
        Vec::<i64>::new()
    );
    assert_eq!(ids(&gw, &["-n", "2"]), [3, 2]);
    assert_eq!(ids(&gw, &["-n", "2", "--before", "2"]), [1]);
    let page = gw.calls_cli(&["list", "-n", "2"]);
    assert!(page.contains("(more: add --before 2)"), "{page}");
    let local = gw.calls_cli(&["list", "--local", "--utc-offset", "+08:00"]);
    assert!(
        local.contains("started (+08:00)") && local.contains("+08:00  "),
        "{local}"
    );

    let shown = gw.calls_json(&["show", "2"]);
    let call_id = shown["emergency_call_id"]
        .as_str()
        .expect("i3 call id")
        .to_owned();
    let incident = shown["incident_id"]
        .as_str()
        .expect("i3 incident id")
        .to_owned();
    assert!(
        call_id.starts_with("urn:emergency:uid:callid:") && call_id.ends_with(":siaga.invalid"),
        "{call_id}"
    );
    assert!(
        incident.starts_with("urn:emergency:uid:incidentid:"),
        "{incident}"
    );
    assert_eq!(gw.calls_json(&["show", &call_id])["id"], 2);
    assert_eq!(gw.calls_json(&["show", &incident])["id"], 2);
    let outcome = shown["outcome"].as_str().expect("outcome");
    assert!(outcome.starts_with("answered by police (sip:"), "{outcome}");
    assert!(
        outcome.contains(" after the call came in; talk "),
        "{outcome}"
    );
    let legs: Vec<&str> = shown["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["leg"].as_str())
        .collect();
    assert!(legs.contains(&"A") && legs.contains(&"B1"), "{legs:?}");
    let text = gw.calls_cli(&["show", &incident, "--local", "--utc-offset", "+08:00"]);
    assert!(text.contains("  outcome     answered by police"), "{text}");
    assert!(text.contains(&format!("  i3 call id  {call_id}")), "{text}");
    assert!(text.contains("sip B1 -> "), "{text}");
    assert!(text.contains("+08:00"), "{text}");
    let one = gw.calls_json(&["show", "1"]);
    assert!(
        one["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("no agency answered; ended abandoned_in_ivr after ")),
        "{one}"
    );
    let (ok, events, _) = siaga(&["events", "--db", &db_arg, "--kind", "start"]);
    // Since issue 13 each event names its node: `start  [<host name>] listening on …`.
    assert!(
        ok && events.lines().count() == 1
            && events
                .split_once("  start  [")
                .is_some_and(|(_, rest)| rest.contains("] listening on")),
        "{events}"
    );

    // --- item 4: the chain verifies ---
    let (ok, first) = audit(&db);
    assert!(ok, "{first}");
    let recordings: Vec<(i64, String)> = {
        let conn = gw.db();
        let mut stmt = conn
            .prepare("SELECT id, recording_path FROM calls WHERE recording_sha256 IS NOT NULL ORDER BY id")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        recordings.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "every call recorded"
    );

    // --- item 3: keys, export, verify elsewhere, tampering ---
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().expect("utf8");
    let (ok, public, err) = siaga(&["keys", "init", "--key-dir", keys_arg, "--db", &db_arg]);
    assert!(ok, "{err}");
    let public = public.trim().to_owned();
    assert_eq!(public.len(), 64);
    let (ok, _, err) = siaga(&["keys", "init", "--key-dir", keys_arg]);
    assert!(!ok && err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        siaga(&["keys", "show", "--key-dir", keys_arg]).1.trim(),
        public
    );
    let out = dir.path().join("out");
    let (ok, _, err) = siaga(&[
        "calls",
        "export",
        "2",
        "--out",
        out.to_str().expect("utf8"),
        "--db",
        &db_arg,
        "--key-dir",
        keys_arg,
        "--reason",
        " ",
    ]);
    assert!(!ok && err.contains("needs a reason"), "{err}");
    let (ok, package, err) = siaga(&[
        "calls",
        "export",
        "2",
        &incident,
        "3",
        "--out",
        out.to_str().expect("utf8"),
        "--db",
        &db_arg,
        "--key-dir",
        keys_arg,
        "--reason",
        "Polresta Samarinda request B/123/XII/2026",
    ]);
    assert!(ok, "{err}");
    let package = PathBuf::from(package.trim());
    for file in [
        "manifest.json",
        "manifest.sig",
        "calls/2/recording.wav",
        "calls/2/call.json",
        "calls/2/timeline.json",
        "calls/2/locations.json",
        "calls/2/sip_messages.json",
        "calls/3/recording.wav",
    ] {
        assert!(
            package.join(file).is_file(),
            "{file} in {}",
            package.display()
        );
    }
    let trail = gw.cli(&["audit", "trail"]);
    assert!(
        trail.contains("export") && trail.contains("Polresta Samarinda request"),
        "{trail}"
    );
    // A copy on another machine: moved away, the call log gone.
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let copy = elsewhere.path().join("package");
    copy_dir(&package, &copy);
    let moved_db = dir.path().join("moved.db");
    std::fs::rename(&db, &moved_db).expect("move the db away");
    let copy_arg = copy.to_str().expect("utf8").to_owned();
    let verify = |key: &str| siaga(&["evidence", "verify", &copy_arg, "--key", key]);
    let (ok, said, err) = verify(&public);
    assert!(ok, "{err}");
    assert!(
        said.starts_with("ok: 12 file(s) of call(s) [2, 3] intact"),
        "{said}"
    );
    // One byte of the WAV.
    let wav = copy.join("calls/2/recording.wav");
    flip_byte(&wav, 5000);
    let (ok, _, err) = verify(&public);
    assert!(
        !ok && err.contains("calls/2/recording.wav: SHA-256"),
        "{err}"
    );
    flip_byte(&wav, 5000);
    assert!(verify(&public).0);
    // The manifest (its reason).
    let manifest = copy.join("manifest.json");
    let original = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, original.replace("B/123", "B/124")).expect("edit");
    let (ok, _, err) = verify(&public);
    assert!(
        !ok && err.contains("manifest.sig: the signature does not match"),
        "{err}"
    );
    std::fs::write(&manifest, &original).expect("restore");
    // The signature.
    let sig = copy.join("manifest.sig");
    let sig_text = std::fs::read_to_string(&sig).expect("sig");
    let mut chars: Vec<char> = sig_text.chars().collect();
    chars[10] = if chars[10] == '0' { '1' } else { '0' };
    std::fs::write(&sig, chars.iter().collect::<String>()).expect("edit");
    let (ok, _, err) = verify(&public);
    assert!(!ok && err.contains("manifest.sig"), "{err}");
    std::fs::write(&sig, &sig_text).expect("restore");
    // Another key than the centre's.
    let other = tempfile::tempdir().expect("other key");
    let (_, other_key, _) = siaga(&[
        "keys",
        "init",
        "--key-dir",
        other.path().to_str().expect("utf8"),
    ]);
    let (ok, _, err) = verify(other_key.trim());
    assert!(!ok && err.contains("not the key given"), "{err}");
    // A file slipped in.
    std::fs::write(copy.join("calls/2/note.txt"), "added").expect("add");
    let (ok, _, err) = verify(&public);
    assert!(
        !ok && err.contains("calls/2/note.txt: not in the manifest"),
        "{err}"
    );
    std::fs::remove_file(copy.join("calls/2/note.txt")).expect("remove");
    assert!(verify(&public).0);
    std::fs::rename(&moved_db, &db).expect("db back");

    // --- the limit of the chain, and its anchor: a signed head ---
    let (ok, head, err) = siaga(&["audit", "head", "--db", &db_arg, "--key-dir", keys_arg]);
    assert!(ok, "{err}");
    let head_file = dir.path().join("head.json");
    std::fs::write(&head_file, &head).expect("head");
    let head_arg = head_file.to_str().expect("utf8");
    let with_head = || {
        siaga(&[
            "audit", "verify", "--db", &db_arg, "--head", head_arg, "--key", &public,
        ])
    };
    assert!(with_head().0, "{}", with_head().1);
    // Someone with write access erases the export from the trail, with every chain entry
    // from there on: the chain alone cannot tell, the signed head can.
    {
        let conn = gw.db();
        let first_export: i64 = conn
            .query_row(
                "SELECT min(seq) FROM access_trail WHERE action = 'export'",
                [],
                |r| r.get(0),
            )
            .expect("export entry");
        let chained: i64 = conn
            .query_row(
                "SELECT seq FROM audit_chain WHERE kind = 'access' AND subject = ?1",
                [first_export],
                |r| r.get(0),
            )
            .expect("its chain entry");
        conn.execute("DELETE FROM access_trail WHERE seq >= ?1", [first_export])
            .expect("erase");
        conn.execute("DELETE FROM audit_chain WHERE seq >= ?1", [chained])
            .expect("erase");
    }
    let (ok, first) = audit(&db);
    assert!(ok, "a truncated chain verifies on its own: {first}");
    let (ok, said, _) = with_head();
    let first = said.lines().next().unwrap_or_default();
    assert!(
        !ok && first.starts_with("FAILED: entry #") && first.contains("signed head"),
        "{said}"
    );

    // --- item 6: retention with a legal hold ---
    let (ok, _, err) = siaga(&[
        "calls",
        "hold",
        &call_id,
        "--reason",
        "case 17/2026",
        "--db",
        &db_arg,
    ]);
    assert!(ok, "{err}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let day = |days_ahead: i64| {
        let out = Command::new("date")
            .args([
                "-u",
                "-d",
                &format!("@{}", now + days_ahead * 86_400),
                "+%Y-%m-%d",
            ])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let sweep = |as_of: &str| {
        let (ok, out, err) = siaga(&[
            "retention",
            "run",
            "--db",
            &db_arg,
            "--recordings-days",
            "30",
            "--sip-bodies-days",
            "30",
            "--as-of",
            as_of,
            "--json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    };
    // 29 days on, nothing is old enough.
    let early = sweep(&day(29));
    assert_eq!(
        early["recordings_deleted"],
        serde_json::json!([]),
        "{early}"
    );
    let swept = sweep(&day(32));
    assert_eq!(
        swept["recordings_deleted"],
        serde_json::json!([1, 3]),
        "{swept}"
    );
    assert_eq!(
        swept["sip_messages_deleted_for"],
        serde_json::json!([1, 3]),
        "{swept}"
    );
    for (call, path) in &recordings {
        assert_eq!(
            Path::new(path).exists(),
            *call == 2,
            "call {call}'s recording {path}"
        );
    }
    let conn = gw.db();
    let stripped: i64 = conn
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE call IN (1, 3) AND length(raw) > 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(stripped, 0);
    let kept: i64 = conn
        .query_row(
            "SELECT count(*) FROM sip_messages WHERE call = 2 AND length(raw) > 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(kept > 0);
    let trail = gw.cli(&["audit", "trail", "--json"]);
    assert_eq!(trail.matches("\"retention_delete\"").count(), 4, "{trail}");
    let (ok, first) = audit(&db);
    assert!(ok, "after retention: {first}");
    let (ok, listed, _) = siaga(&["recordings", "verify", "--db", &db_arg, "--all"]);
    assert!(
        ok && listed.contains("3 recording(s): 1 ok, 0 missing, 0 altered, 2 deleted by retention"),
        "{listed}"
    );

    // A WAV nobody recorded, slipped into the recordings directory.
    let stray = gw.recordings().join("call-99-forged.wav");
    std::fs::write(&stray, b"RIFF").expect("stray");
    let recordings_arg = gw.recordings().to_str().expect("utf8").to_owned();
    let check_dir = || {
        siaga(&[
            "recordings",
            "verify",
            "--db",
            &db_arg,
            "--recordings",
            &recordings_arg,
        ])
    };
    let (ok, listed, _) = check_dir();
    assert!(
        !ok && listed.starts_with("unknown") && listed.contains("call-99-forged.wav"),
        "{listed}"
    );
    assert!(
        listed.contains("; 1 unknown file(s) in the recordings directory"),
        "{listed}"
    );
    std::fs::remove_file(&stray).expect("remove");
    let (ok, listed, _) = check_dir();
    assert!(ok, "{listed}");

    // --- item 4: tampering, each named ---
    let held_wav = &recordings[1].1;
    flip_byte(Path::new(held_wav), 3000);
    let (ok, first) = audit(&db);
    assert!(!ok, "a changed WAV byte fails");
    assert!(
        first.starts_with("FAILED: entry #")
            && first.contains(&format!("call 2's recording {held_wav} was altered")),
        "{first}"
    );
    let (ok, listed, _) = siaga(&["recordings", "verify", "--db", &db_arg]);
    assert!(
        !ok && listed.starts_with("altered") && listed.contains(held_wav),
        "{listed}"
    );
    flip_byte(Path::new(held_wav), 3000);
    assert!(audit(&db).0);

    let detail: String = conn
        .query_row("SELECT detail FROM access_trail WHERE seq = 2", [], |r| {
            r.get(0)
        })
        .expect("row");
    conn.execute(
        "UPDATE access_trail SET detail = 'nothing to see' WHERE seq = 2",
        [],
    )
    .expect("edit");
    let (ok, first) = audit(&db);
    assert!(
        !ok && first.contains("access-trail entry 2 was changed"),
        "{first}"
    );
    conn.execute(
        "UPDATE access_trail SET detail = ?1 WHERE seq = 2",
        [&detail],
    )
    .expect("restore");
    assert!(audit(&db).0);

    // As the sqlite3 shell would (foreign keys off by default there).
    conn.pragma_update(None, "foreign_keys", "OFF")
        .expect("pragma");
    conn.execute("DELETE FROM calls WHERE id = 3", [])
        .expect("delete");
    let (ok, first) = audit(&db);
    assert!(
        !ok && first.contains("call 3's record is missing (deleted)"),
        "{first}"
    );
    assert!(first.starts_with("FAILED: entry #"), "{first}");
}

/// `siaga ARGS --log-url URL`, which must succeed: its stdout.
fn siaga_pg(url: &str, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.extend(["--log-url", url]);
    let (ok, out, err) = siaga(&args);
    assert!(ok, "siaga {args:?}: {out}{err}");
    out
}

/// `siaga audit verify` on PostgreSQL as node siaga-a (whose recordings are here): (ok,
/// first line).
fn audit_pg(url: &str) -> (bool, String) {
    let (ok, out, _) = siaga(&["audit", "verify", "--log-url", url, "--node", "siaga-a"]);
    (ok, out.lines().next().unwrap_or_default().to_owned())
}

/// The same evidence flow on a shared PostgreSQL call log (issue 13): SIPp calls through a
/// gateway node on PostgreSQL are sealed in the chain, found by the CLI's filters and i3 ids,
/// exported into a package that verifies, held and swept; then a call row or an access-trail
/// row edited in PostgreSQL makes `siaga audit verify` fail naming it.
#[test]
fn on_postgresql_calls_are_sealed_exported_swept_and_tampering_is_named() {
    let cluster = common::pg::PgCluster::start();
    let url = cluster.create_db();
    let db = common::pg::db_name(&url).to_owned();
    let ports = AgencyPorts::new();
    let dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(dir.path(), &ports, &[]);
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[log]\nurl = \"{url}\"\nspill_dir = \"spill\"\n\n[node]\nname = \"siaga-a\"\n"),
    )
    .expect("config");
    let config_arg = config.to_str().expect("utf8").to_owned();
    let mut gw = Gateway::start(&[
        "--config",
        &config_arg,
        "--dialplan",
        plan.to_str().expect("utf8 path"),
    ]);
    menu_call_then_police_call(&gw, dir.path(), &ports, "3000");
    // The stop seals both calls; their recordings were chained when finished.
    gw.stop();
    let count = |query: &str| -> i64 { cluster.psql(&db, query).parse().expect("a count") };
    assert_eq!(
        count("SELECT count(*) FROM audit_chain WHERE kind = 'call'"),
        2
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_chain WHERE kind = 'recording'"),
        2
    );
    let (ok, first) = audit_pg(&url);
    assert_eq!(
        (ok, first.as_str()),
        (true, "ok: the chain and the recordings verify")
    );
    // Run as another node (this host's name), siaga-a's recordings are left to siaga-a.
    let elsewhere = siaga_pg(&url, &["audit", "verify"]);
    assert!(
        elsewhere.contains("2 recording(s) of other nodes' calls not re-hashed here"),
        "{elsewhere}"
    );

    // The CLI's filters and i3 lookup read PostgreSQL.
    let list = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["calls", "list", "--json"];
        all.extend(args);
        let out = siaga_pg(&url, &all);
        serde_json::from_str::<serde_json::Value>(&out)
            .expect("json")
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["id"].as_i64().expect("id"))
            .collect()
    };
    let all = list(&[]);
    assert_eq!(all.len(), 2, "{all:?}");
    let (police_call, menu_call) = (all[0], all[1]);
    assert_eq!(list(&["--dialled", "110"]), [police_call]);
    assert_eq!(list(&["--caller", "081100000001"]), [menu_call]);
    assert_eq!(list(&["--answered"]), [police_call]);
    assert_eq!(list(&["--route", "police"]), [police_call]);
    let shown: serde_json::Value = serde_json::from_str(&siaga_pg(
        &url,
        &["calls", "show", &police_call.to_string(), "--json"],
    ))
    .expect("json");
    let incident = shown["incident_id"].as_str().expect("incident id");
    let by_incident: serde_json::Value =
        serde_json::from_str(&siaga_pg(&url, &["calls", "show", incident, "--json"]))
            .expect("json");
    assert_eq!(by_incident["id"], police_call);
    let events = siaga_pg(&url, &["events", "--kind", "start"]);
    assert_eq!(events.lines().count(), 1, "{events}");

    // Keys, an export on the trail, and the package verifies without the database.
    let keys = dir.path().join("keys");
    let keys_arg = keys.to_str().expect("utf8");
    siaga_pg(&url, &["keys", "init", "--key-dir", keys_arg]);
    let out = dir.path().join("out");
    let package = siaga_pg(
        &url,
        &[
            "calls",
            "export",
            &police_call.to_string(),
            "--out",
            out.to_str().expect("utf8"),
            "--key-dir",
            keys_arg,
            "--reason",
            "Polresta request B/7/XII/2026",
        ],
    );
    let (ok, verified, err) = siaga(&["evidence", "verify", package.trim()]);
    assert!(ok && verified.starts_with("ok: "), "{verified}{err}");
    let trail = siaga_pg(&url, &["audit", "trail"]);
    assert!(
        trail.contains("export") && trail.contains("keys_init"),
        "{trail}"
    );

    // Hold the police call, sweep everything older than a day as of next year: only the
    // menu call's recording goes, on the trail, and the chain still verifies.
    siaga_pg(
        &url,
        &[
            "calls",
            "hold",
            &police_call.to_string(),
            "--reason",
            "court order 12/2026",
        ],
    );
    let next_year = {
        let out = Command::new("date")
            .args(["-u", "-d", "+365 days", "+%Y-%m-%d"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let swept: serde_json::Value = serde_json::from_str(&siaga_pg(
        &url,
        &[
            "retention",
            "run",
            "--config",
            &config_arg,
            "--recordings-days",
            "1",
            "--as-of",
            &next_year,
            "--json",
        ],
    ))
    .expect("json");
    assert_eq!(swept["recordings_deleted"], serde_json::json!([menu_call]));
    let (ok, first) = audit_pg(&url);
    assert!(ok, "{first}");
    let recordings = siaga_pg(
        &url,
        &["recordings", "verify", "--all", "--node", "siaga-a"],
    );
    assert!(
        recordings.contains("1 ok") && recordings.contains("1 deleted by retention"),
        "{recordings}"
    );

    // Tampering is named: a recording's byte on this node's disk, a row in PostgreSQL.
    let wav = cluster.psql(
        &db,
        &format!("SELECT recording_path FROM calls WHERE id = {police_call}"),
    );
    flip_byte(Path::new(&wav), 100);
    let (ok, first) = audit_pg(&url);
    assert!(
        !ok && first.contains(&format!("call {police_call}'s recording {wav} was altered")),
        "{first}"
    );
    flip_byte(Path::new(&wav), 100);
    assert!(audit_pg(&url).0);
    cluster.psql(
        &db,
        &format!("UPDATE calls SET caller_from = 'sip:nobody@x' WHERE id = {menu_call}"),
    );
    let (ok, first) = audit_pg(&url);
    assert!(
        !ok && first.contains(&format!("call {menu_call}'s record")) && first.contains("changed"),
        "{first}"
    );
    let original = cluster.psql(&db, "SELECT detail FROM access_trail WHERE seq = 1");
    cluster.psql(
        &db,
        "UPDATE access_trail SET detail = 'nothing to see' WHERE seq = 1",
    );
    let (_, out, _) = siaga(&["audit", "verify", "--log-url", &url]);
    assert!(
        out.contains("access-trail entry 1 was changed"),
        "{out}\n(was {original:?})"
    );
}
