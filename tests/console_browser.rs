//! The console in a real browser: Debian's Chromium driven through chromedriver (WebDriver),
//! against a gateway whose log holds real SIPp calls. Signs in, finds a call by the caller's
//! number, opens it, plays the recording (playback advances), opens a SIP message from the
//! ladder, exports the call's evidence (the download checked by `siaga evidence verify`, and
//! a copy with one WAV byte changed refused), then signs in as an agency and checks another
//! agency's call is not listed. A screenshot of each page goes to target/console-screenshots/
//! (or $SIAGA_SCREENSHOTS).

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::console::{ConsoleSetup, LOOPBACK, POLICE, SUPERVISOR, evidence_verify, request};
use common::wait_until;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session on a chromedriver child.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    shots: PathBuf,
    _profile: tempfile::TempDir,
    /// Where Chromium saves downloads (set through its preferences).
    downloads: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // Its own process group: the browsers it starts go with it, even if the test fails
        // before a WebDriver session exists.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("chromedriver ready", Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let downloads = tempfile::tempdir().expect("download dir");
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            shots: std::env::var_os("SIAGA_SCREENSHOTS").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots"),
                PathBuf::from,
            ),
            _profile: profile,
            downloads,
        };
        std::fs::create_dir_all(&browser.shots).expect("screenshot dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1400,1100", "--autoplay-policy=no-user-gesture-required",
                         "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", browser._profile.path().display())],
                "prefs": {
                    "download.default_directory": browser.downloads.path().to_str().expect("utf8"),
                    "download.prompt_for_download": false
                }
            }
        }}});
        let reply = browser.call("POST", "/session", Some(caps));
        browser.session = reply["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {reply}"))
            .to_owned();
        browser
    }

    /// A WebDriver command; its `value` (panics on a WebDriver error).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let reply = request(
            self.addr,
            LOOPBACK,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        let value: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|_| panic!("WebDriver {path}: {}", reply.text()));
        if reply.status != 200 {
            panic!("WebDriver {method} {path}: {} {value}", reply.status);
        }
        value
            .get("sessionId")
            .map_or_else(|| value["value"].clone(), |_| value.clone())
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{what}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})));
    }

    fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn text(&self) -> String {
        self.script("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A full-page screenshot of the page now, as NAME.png.
    fn shot(&self, name: &str) {
        // The whole page: the window grows to the document's height first.
        let height = self
            .script("return Math.min(document.documentElement.scrollHeight, 6000);")
            .as_i64()
            .unwrap_or(1100);
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1400, "height": height.max(700) + 140})),
        );
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().expect("base64 PNG"));
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).expect("write screenshot");
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1400, "height": 1100})),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(
                self.addr,
                LOOPBACK,
                "DELETE",
                &format!("/session/{}", self.session),
                &[],
                b"",
            );
        }
        // SAFETY: kill takes no pointers; the negative pid names the group started above.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let n = group.iter().fold(0u32, |acc, d| acc << 6 | d) << (6 * (4 - group.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..group.len().saturating_sub(1)]);
    }
    out
}

/// Where the data of the archive's member ending in `suffix` starts, and its length.
fn member_in_tar(archive: &std::path::Path, suffix: &str) -> (u64, u64) {
    let file = std::fs::File::open(archive).expect("the archive");
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().expect("a tar archive") {
        let entry = entry.expect("an entry");
        if entry
            .path()
            .expect("a name")
            .to_string_lossy()
            .ends_with(suffix)
        {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("no {suffix} in {}", archive.display());
}

fn sign_in(b: &Browser, base: &str, (name, password): (&str, &str)) {
    b.go(&format!("{base}/login"));
    b.type_into("input[name=name]", name);
    b.type_into("input[name=password]", password);
    b.click("form.login button");
    wait_until(
        "the calls page after sign-in",
        Duration::from_secs(10),
        || b.url().ends_with("/calls"),
    );
}

#[test]
fn a_supervisor_finds_plays_and_reads_a_call_and_an_agency_sees_only_its_own() {
    let s = ConsoleSetup::start();
    let base = format!("http://{}", s.http);
    let b = Browser::start();

    b.go(&format!("{base}/calls"));
    assert!(
        b.url().ends_with("/login"),
        "a stranger is sent to the sign-in page"
    );
    b.shot("01-sign-in");
    sign_in(&b, &base, SUPERVISOR);
    // A call in progress shows in the live box with its state (refreshed by the page).
    let udp = s.gw.udp;
    let holder = std::thread::spawn(move || {
        common::sipp(
            udp,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "5000"],
        )
    });
    wait_until("the live call on the page", Duration::from_secs(20), || {
        b.text().contains("in the IVR menu")
    });
    b.shot("02-calls-live");
    common::assert_sipp_ok(&holder.join().expect("sipp"), "the held call");

    // Find the fire call by its caller's number, written as people write it.
    b.type_into("input[name=caller]", "0822-2222-2222");
    b.click("form.filters button");
    wait_until("the filtered list", Duration::from_secs(10), || {
        b.url().contains("caller=")
    });
    let rows = b.script(
        "return [...document.querySelectorAll('#calls tbody tr a')].map(a => a.textContent);",
    );
    assert_eq!(
        rows,
        json!([s.fire.to_string()]),
        "one call from that number"
    );
    b.shot("03-calls-filtered");

    // Open it.
    b.click("#calls tbody tr a");
    wait_until("the call page", Duration::from_secs(10), || {
        b.url().ends_with(&format!("/calls/{}", s.fire))
    });
    let text = b.text();
    assert!(
        text.contains("+6282222222222") && text.contains("SIP ladder"),
        "{text}"
    );

    // Play the recording: playback advances.
    b.script("const a = document.getElementById('player'); a.muted = true; a.play(); return true;");
    wait_until("the recording plays", Duration::from_secs(15), || {
        b.script("return document.getElementById('player').currentTime;")
            .as_f64()
            .unwrap_or(0.0)
            > 0.3
    });
    b.script("document.getElementById('player').pause(); return true;");
    b.shot("04-call");

    // Open a SIP message from the ladder: its verbatim text shows.
    let hidden = b.script("return getComputedStyle(document.getElementById('msg-0')).display;");
    assert_eq!(hidden, json!("none"));
    b.click("svg.ladder a.msg");
    let shown = b.script(
        "const m = document.getElementById('msg-0'); return [getComputedStyle(m).display, m.innerText];",
    );
    assert_ne!(shown[0], json!("none"), "the message opens");
    assert!(
        shown[1]
            .as_str()
            .unwrap_or_default()
            .contains("INVITE sip:112@"),
        "verbatim INVITE: {shown}"
    );
    b.shot("05-call-sip-message");

    // Export the call's evidence: one file downloads, and `siaga evidence verify` accepts it.
    assert!(b.text().contains("Export evidence"));
    b.type_into(
        "form.exportform input[name=reason]",
        "Polresta Samarinda, letter B/123/XII/2026",
    );
    b.shot("11-call-export-form");
    b.click("form.exportform button");
    let downloads = b.downloads.path().to_path_buf();
    // Chromium writes NAME.crdownload and renames it when the download is complete.
    let done = || -> Option<PathBuf> {
        std::fs::read_dir(&downloads)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "tar"))
    };
    wait_until("the evidence download", Duration::from_secs(30), || {
        done().is_some()
    });
    let archive = done().expect("the download");
    let name = archive
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("evidence-") && name.ends_with(&format!("-call-{}.tar", s.fire)),
        "named after the call and the time: {name}"
    );
    let key = s.keys.join("centre.pub");
    let (good, said) = evidence_verify(&key, &archive);
    assert!(good, "the downloaded package verifies: {said}");
    assert!(said.contains("letter B/123/XII/2026"), "{said}");
    // One byte of the WAV changed in a copy: refused, naming the file.
    let tampered = downloads.join("tampered.tar");
    let mut bytes = std::fs::read(&archive).expect("the archive");
    let (start, len) = member_in_tar(&archive, "recording.wav");
    assert!(len > 1000, "a recording in the package");
    bytes[(start + len / 2) as usize] ^= 0x01;
    std::fs::write(&tampered, bytes).expect("the tampered copy");
    let (good, said) = evidence_verify(&key, &tampered);
    assert!(!good, "a changed WAV byte fails: {said}");
    assert!(
        said.contains(&format!("calls/{}/recording.wav", s.fire)) && said.contains("SHA-256"),
        "the failure names the file: {said}"
    );
    b.shot("12-call-after-export");

    // Several calls from the list: tick two, give a reason, one package holding both.
    b.go(&format!("{base}/calls"));
    for id in [s.police, s.fire] {
        b.click(&format!("input[name=call][value='{id}']"));
    }
    b.type_into(
        "#export-calls input[name=reason]",
        "Pengadilan Negeri Samarinda, perkara 12/2026",
    );
    b.shot("13-calls-export-ticked");
    b.click("#export-calls button");
    let both = format!(
        "-call-{}-{}.tar",
        s.police.min(s.fire),
        s.police.max(s.fire)
    );
    let package = || -> Option<PathBuf> {
        std::fs::read_dir(&downloads)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(&both))
    };
    wait_until("the two calls' package", Duration::from_secs(30), || {
        package().is_some()
    });
    let (good, said) = evidence_verify(&key, &package().expect("the download"));
    assert!(good, "the ticked calls' package verifies: {said}");
    assert!(said.contains("perkara 12/2026"), "{said}");

    b.go(&format!("{base}/summary"));
    assert!(b.text().contains("Time to answer by agency"));
    b.shot("06-summary");
    b.go(&format!("{base}/trail"));
    assert!(b.text().contains("recording_play"));
    assert!(
        b.text().contains("letter B/123/XII/2026"),
        "the export on the trail"
    );
    b.shot("07-access-trail");

    // A caller with a PIDF-LO circle: the call page draws it on the map.
    let before: i64 =
        s.gw.db()
            .query_row("SELECT coalesce(max(id), 0) FROM calls", [], |r| r.get(0))
            .expect("calls so far");
    let out = s.gw.sipp(
        "uac_pidf.xml",
        false,
        &["-s", "urn:service:sos", "-m", "1", "-d", "1000"],
    );
    common::assert_sipp_ok(&out, "a caller with a location");
    let db = s.gw.db();
    let mut located = 0;
    wait_until("the located call finished", Duration::from_secs(20), || {
        db.query_row(
            "SELECT c.id FROM calls c JOIN call_locations l ON l.call = c.id \
             WHERE c.id > ?1 AND c.recording_sha256 IS NOT NULL AND c.ended_at IS NOT NULL",
            [before],
            |r| r.get::<_, i64>(0),
        )
        .map(|id| located = id)
        .is_ok()
    });
    b.go(&format!("{base}/calls/{located}"));
    let circles = b.script("return document.querySelectorAll('svg.map circle.area').length;");
    assert_eq!(circles, json!(1), "the caller's circle on the map");
    b.shot("10-call-location");

    // Sign out; an agency account sees its own call only.
    b.click("form.signout button");
    wait_until("signed out", Duration::from_secs(10), || {
        b.url().ends_with("/login")
    });
    sign_in(&b, &base, POLICE);
    let listed = b.script(
        "return [...document.querySelectorAll('#calls tbody tr a')].map(a => a.textContent);",
    );
    assert_eq!(
        listed,
        json!([s.police.to_string()]),
        "the police see only their call"
    );
    b.shot("08-agency-calls");
    b.go(&format!("{base}/calls/{}", s.police));
    assert!(
        b.text().contains("SIP ladder") && !b.text().contains("Export evidence"),
        "an agency gets no export form"
    );
    b.go(&format!("{base}/calls/{}", s.fire));
    assert!(
        b.text().contains("Not found"),
        "another agency's call is not found"
    );
    b.shot("09-agency-other-call");
}
