//! The console's test harness: a small HTTP/1.1 client over a plain socket (it sends paths
//! exactly as written, `..` and all, which a browser or a client library would clean up) and
//! a gateway whose log holds real SIPp calls to two agencies, with one account per role.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::pg::{PgCluster, db_name};
use super::{
    AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, sipp_caller_with_voice,
    test_plan, wait_until,
};

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection, from `from` (any 127.x address: the console sees it
/// as the client's address).
pub fn request(
    addr: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("bind the client address");
    socket
        .connect(&addr.into())
        .expect("connect to the console");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    // Until the answer is complete: to the end of the connection, or Content-Length bytes
    // after the head (a WebDriver server may keep the connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| raw.len() >= split + 4 + len) {
                break;
            }
        }
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A signed-in client: its session cookie and the CSRF token of its forms.
pub struct Client {
    pub addr: SocketAddr,
    pub from: IpAddr,
    pub cookie: String,
    pub csrf: String,
}

/// The sign-in page's pre-session token: its cookie (`name=value`) and the form's field.
pub fn login_token(addr: SocketAddr, from: IpAddr) -> (String, String) {
    let page = request(addr, from, "GET", "/login", &[], b"");
    assert_eq!(page.status, 200, "the sign-in page: {}", page.text());
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("the sign-in page sets its token cookie")
        .to_owned();
    let field = page
        .text()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a token field in the sign-in form")
        .to_owned();
    (cookie, field)
}

/// POST /login with `cookie` and `form` as given (no token unless they carry one).
pub fn login_post(addr: SocketAddr, from: IpAddr, cookie: Option<&str>, form: &str) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    request(addr, from, "POST", "/login", &headers, form.as_bytes())
}

/// Sign-in as a browser does it: the sign-in page, then its form posted; the raw answer.
pub fn sign_in_reply(addr: SocketAddr, from: IpAddr, name: &str, password: &str) -> Reply {
    let (cookie, csrf) = login_token(addr, from);
    login_post(
        addr,
        from,
        Some(&cookie),
        &format!("name={name}&password={password}&csrf={csrf}"),
    )
}

impl Client {
    pub fn sign_in(addr: SocketAddr, from: IpAddr, name: &str, password: &str) -> Client {
        let reply = sign_in_reply(addr, from, name, password);
        assert_eq!(reply.status, 303, "sign-in of {name}: {}", reply.text());
        let set_cookie = reply.header("set-cookie").expect("a session cookie");
        let cookie = set_cookie.split(';').next().expect("cookie").to_owned();
        let mut client = Client {
            addr,
            from,
            cookie,
            csrf: String::new(),
        };
        let page = client.get("/calls").text();
        client.csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a CSRF token in the page")
            .to_owned();
        client
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, extra: &[(&str, &str)]) -> Reply {
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        headers.extend_from_slice(extra);
        request(self.addr, self.from, "GET", path, &headers, b"")
    }

    pub fn post(&self, path: &str, form: &str) -> Reply {
        request(
            self.addr,
            self.from,
            "POST",
            path,
            &[
                ("Cookie", self.cookie.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        )
    }
}

/// `siaga evidence verify PACKAGE --key KEY`: success, and what it printed (out and err).
pub fn evidence_verify(key: &Path, package: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siaga"))
        .args(["evidence", "verify"])
        .arg(package)
        .arg("--key")
        .arg(key)
        .output()
        .expect("siaga evidence verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The call ids linked from the calls table of a list page (not the live box).
pub fn listed_ids(page: &str) -> Vec<i64> {
    let table = page.split("id=\"calls\"").nth(1).unwrap_or("");
    table
        .split("<a href=\"/calls/")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

pub const SUPERVISOR: (&str, &str) = ("sri", "supervisor-pass-1");
pub const AUDITOR: (&str, &str) = ("audit", "auditor-pass-12");
pub const POLICE: (&str, &str) = ("pol", "police-pass-123");
pub const FIRE: (&str, &str) = ("damkar", "fire-pass-1234");

/// The console's gateway with three calls in its log: `police` from +6281111111111 (pressed
/// 1, answered by the police, talked), `fire` from +6282222222222 (pressed 2, answered by
/// the fire brigade), `abandoned` (default number, hung up in the menu).
pub struct ConsoleSetup {
    pub gw: Gateway,
    pub http: SocketAddr,
    pub police: i64,
    pub fire: i64,
    pub abandoned: i64,
    /// The centre's evidence key directory (centre.key, centre.pub).
    pub keys: PathBuf,
    /// The gateway's temporary directory (`TMPDIR`, as the unit's `PrivateTmp` gives it one):
    /// where the console builds packages.
    pub tmp: PathBuf,
    _plan_dir: tempfile::TempDir,
    /// The shared PostgreSQL log the gateway writes to (None: its SQLite file). Dropped
    /// last, after the gateway.
    pub postgres: Option<(PgCluster, String)>,
}

/// uac_talk.xml calling from `number` instead of the scenario's own.
fn caller_scenario(dir: &Path, number: &str) -> PathBuf {
    let text = std::fs::read_to_string(super::scenario_path("uac_talk.xml")).expect("scenario");
    let path = dir.join(format!("uac_talk_{number}.xml"));
    std::fs::write(&path, text.replace("+6281234567890", number)).expect("write scenario");
    path
}

pub fn add_user(
    gw: &Gateway,
    plan: &Path,
    (name, password): (&str, &str),
    role: &str,
    route: Option<&str>,
) {
    add_user_to(gw, None, plan, (name, password), role, route)
}

/// [`add_user`] in the PostgreSQL log at `log_url` when given.
pub fn add_user_to(
    gw: &Gateway,
    log_url: Option<&str>,
    plan: &Path,
    (name, password): (&str, &str),
    role: &str,
    route: Option<&str>,
) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_siaga"));
    cmd.args(["users", "add", name, "--role", role, "--db"])
        .arg(gw.db_path())
        .arg("--dialplan")
        .arg(plan);
    if let Some(url) = log_url {
        cmd.args(["--log-url", url]);
    }
    if let Some(r) = route {
        cmd.args(["--route", r]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("siaga users add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "users add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ConsoleSetup {
    pub fn start() -> ConsoleSetup {
        Self::start_with(None)
    }

    /// The same calls and accounts, the gateway logging to a throw-away PostgreSQL.
    pub fn start_on_postgres() -> ConsoleSetup {
        let cluster = PgCluster::start();
        let url = cluster.create_db();
        Self::start_with(Some((cluster, url)))
    }

    fn start_with(postgres: Option<(PgCluster, String)>) -> ConsoleSetup {
        let ports = AgencyPorts::new();
        let plan_dir = tempfile::tempdir().expect("dir");
        let plan = test_plan(plan_dir.path(), &ports, &[]);
        let log_url = postgres.as_ref().map(|(_, url)| url.clone());
        // The centre's evidence key, for exports from the console.
        let keys = plan_dir.path().join("keys");
        let out = Command::new(env!("CARGO_BIN_EXE_siaga"))
            .args(["keys", "init", "--key-dir"])
            .arg(&keys)
            .output()
            .expect("siaga keys init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config_text = format!("[evidence]\nkey_dir = {:?}\n", keys.display().to_string());
        if let Some(url) = &log_url {
            // The spill directory of its own, in the test's directory.
            config_text.push_str(&format!("[log]\nurl = \"{url}\"\nspill_dir = \"spill\"\n"));
        }
        let config = plan_dir.path().join("siaga.toml");
        std::fs::write(&config, config_text).expect("config");
        let tmp = plan_dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("tmp");
        let gw = Gateway::start_with_env(
            tempfile::tempdir().expect("dir"),
            &[
                "--dialplan",
                plan.to_str().expect("utf8"),
                "--config",
                config.to_str().expect("utf8"),
            ],
            &[("TMPDIR", tmp.to_str().expect("utf8"))],
        );
        let http = gw.http.expect("the gateway prints its HTTP address");
        for (who, role, route) in [
            (SUPERVISOR, "supervisor", None),
            (AUDITOR, "auditor", None),
            (POLICE, "agency", Some("police")),
            (FIRE, "agency", Some("fire")),
        ] {
            add_user_to(&gw, log_url.as_deref(), &plan, who, role, route);
        }
        for (number, digit, port, what) in [
            ("+6281111111111", "1", ports.police, "police"),
            ("+6282222222222", "2", ports.fire, "fire"),
        ] {
            let agency = sipp_agency("agency_answer.xml", port, &["-m", "1"]);
            let scenario = caller_scenario(plan_dir.path(), number);
            let out = sipp_caller_with_voice(
                gw.udp,
                scenario.to_str().expect("utf8"),
                &["-s", "112", "-key", "digit", digit, "-m", "1"],
            );
            assert_sipp_ok(&out, &format!("a caller to the {what}"));
            finish_agency(agency, what);
        }
        let out = gw.sipp(
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "1500"],
        );
        assert_sipp_ok(&out, "a caller who hangs up in the menu");
        let mut s = ConsoleSetup {
            police: 0,
            fire: 0,
            abandoned: 0,
            keys,
            tmp,
            http,
            gw,
            _plan_dir: plan_dir,
            postgres,
        };
        wait_until("three finished recordings", Duration::from_secs(30), || {
            s.value(
                "SELECT count(*) FROM calls WHERE recording_sha256 IS NOT NULL AND ended_at IS NOT NULL",
            )
            .as_deref()
                == Some("3")
        });
        let id_of = |number: &str| -> i64 {
            s.value(&format!(
                "SELECT id FROM calls WHERE caller_from LIKE '%{number}%'"
            ))
            .and_then(|id| id.parse().ok())
            .expect("the call is logged")
        };
        (s.police, s.fire, s.abandoned) = (
            id_of("+6281111111111"),
            id_of("+6282222222222"),
            id_of("+6281234567890"),
        );
        s
    }

    /// The first column of the first row of `sql` on the gateway's log, as text (None: no
    /// row, NULL, or the log not readable yet).
    pub fn value(&self, sql: &str) -> Option<String> {
        match &self.postgres {
            Some((cluster, url)) => cluster
                .try_psql(db_name(url), sql)
                .ok()
                .and_then(|rows| rows.lines().next().map(str::to_owned))
                .filter(|v| !v.is_empty()),
            None => {
                use rusqlite::types::Value;
                let value = self
                    .gw
                    .db()
                    .query_row(sql, [], |r| r.get::<_, Value>(0))
                    .ok()?;
                match value {
                    Value::Integer(i) => Some(i.to_string()),
                    Value::Real(f) => Some(f.to_string()),
                    Value::Text(t) => Some(t),
                    Value::Null | Value::Blob(_) => None,
                }
            }
        }
    }

    pub fn client(&self, (name, password): (&str, &str)) -> Client {
        Client::sign_in(self.http, LOOPBACK, name, password)
    }
}
