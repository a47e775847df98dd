//! SIP over TLS against real TLS peers (Debian's SIPp has no TLS): Kamailio with its tls
//! module as the carrier in front of the gateway and as the agency side, `openssl s_client`
//! for handshakes gone wrong. Certificates come from a throw-away CA made with `openssl` in
//! each test's temporary directory.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, test_plan};

/// A throw-away PKI: a CA, the gateway's certificates (two, for reloads), Kamailio's, the
/// gateway's client certificate for mutual TLS, and an impostor: a self-signed certificate
/// (`rogue`, also a CA) and a leaf it signed (`imp`).
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let self_signed = |name: &str, cn: &str| {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            args.extend(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]);
            openssl(d, &args);
        };
        self_signed("ca", "Siaga test CA");
        self_signed("rogue", "impostor");
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("ext");
        for (name, cn, ca) in [
            ("gw", "siaga", "ca"),
            ("gw2", "siaga", "ca"),
            ("kam", "kamailio", "ca"),
            ("client", "siaga client", "ca"),
            // A proper leaf, with the right names, from the wrong CA.
            ("imp", "impostor", "rogue"),
        ] {
            let (key, csr, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_pem,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    "leaf.ext",
                ],
            );
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// `openssl x509 -fingerprint -sha256` of a PEM certificate: `AB:CD:…`.
    fn fingerprint(&self, file: &str) -> String {
        fingerprint_of_pem(&std::fs::read(self.path(file)).expect("pem"))
    }
}

fn fingerprint_of_pem(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem)
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split_once('=')
        .map(|(_, fp)| fp.to_owned())
        .unwrap_or_else(|| {
            panic!(
                "no fingerprint in {:?}",
                String::from_utf8_lossy(&pem[..pem.len().min(80)])
            )
        })
}

/// The certificate a TLS listener presents now, by its SHA-256 (a fresh `openssl s_client`).
fn presented_fingerprint(addr: SocketAddr) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let pem_start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from {addr}: {text}"));
    let pem_end = text.find("-----END CERTIFICATE-----").expect("end") + 25;
    fingerprint_of_pem(text[pem_start..pem_end].as_bytes())
}

/// A SIP peer on a TLS connection to the gateway: `openssl s_client` (checking the gateway's
/// certificate against the test CA and its name, presenting `cert` if given), its received
/// lines read on a thread.
struct TlsClient {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, ca: &Path, cert: Option<(&Path, &Path)>) -> TlsClient {
        let mut command = Command::new("openssl");
        command
            .args(["s_client", "-quiet", "-ign_eof", "-verify_return_error"])
            .args([
                "-verify_hostname",
                "localhost",
                "-connect",
                &addr.to_string(),
            ])
            .arg("-CAfile")
            .arg(ca);
        if let Some((cert, key)) = cert {
            command.arg("-cert").arg(cert).arg("-key").arg(key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        TlsClient {
            child,
            stdin,
            lines,
        }
    }

    /// Sends an OPTIONS whose Via names `via` (with `;alias` if asked) and returns the first
    /// line of the answer.
    fn options(&mut self, addr: SocketAddr, via: &str, alias: bool) -> String {
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let alias = if alias { ";alias" } else { "" };
        let request = format!(
            "OPTIONS sip:siaga@{addr} SIP/2.0\r\nVia: SIP/2.0/TLS {via};branch=z9hG4bK{n}{alias}\r\n\
             From: <sip:probe@{via}>;tag=p1\r\nTo: <sip:siaga@{addr}>\r\n\
             Call-ID: probe-{}-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            std::process::id(),
        );
        self.stdin.write_all(request.as_bytes()).expect("write");
        self.stdin.flush().expect("flush");
        self.wait_for("SIP/2.0", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no SIP answer over TLS from {addr}"))
    }

    /// The first received line starting with `prefix` within `within`.
    fn wait_for(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    }
}

impl Drop for TlsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One OPTIONS on a fresh TLS connection (source address `source` in its Via): the first
/// line of the answer.
fn options_over_tls(addr: SocketAddr, ca: &Path, source: &str) -> String {
    TlsClient::connect(addr, ca, None).options(addr, &format!("{source}:5061"), false)
}

fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn tls_addr(gw: &mut Gateway) -> SocketAddr {
    gw.stdout_line("listening tls ")
        .trim_start_matches("listening tls ")
        .parse()
        .expect("tls address")
}

/// A Kamailio with its tls module, stopped when dropped.
struct Kamailio {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on `cfg` (its `@MODULES@` and `@DIR@` filled in) and `tls` (its TLS
    /// profiles), then waits until its UDP port answers an OPTIONS.
    fn start(cfg: &str, tls: &str, udp_port: u16) -> Kamailio {
        let dir = tempfile::tempdir().expect("dir");
        let modules = std::fs::read_dir("/usr/lib")
            .expect("/usr/lib")
            .filter_map(Result::ok)
            .map(|e| e.path().join("kamailio/modules"))
            .find(|p| p.join("tls.so").exists())
            .expect("kamailio's tls module is installed (apt-get install kamailio-tls-modules)");
        let cfg = cfg
            .replace("@MODULES@", &modules.display().to_string())
            .replace("@DIR@", &dir.path().display().to_string());
        std::fs::write(dir.path().join("kamailio.cfg"), cfg).expect("cfg");
        std::fs::write(dir.path().join("tls.cfg"), tls).expect("tls cfg");
        let log = dir.path().join("kamailio.log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(dir.path().join("kamailio.cfg"))
            .args(["-DD", "-E", "-w"])
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("k.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("kamailio is installed (apt-get install kamailio kamailio-tls-modules)");
        let mut k = Kamailio {
            child,
            _dir: dir,
            log,
        };
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let options = format!(
            "OPTIONS sip:127.0.0.1:{udp_port} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKk\r\n\
             From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: up@test\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            probe.local_addr().expect("addr")
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            let exited = k.child.try_wait().ok().flatten();
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "kamailio did not start: {}",
                k.log()
            );
            let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", udp_port));
            if probe.recv_from(&mut buf).is_ok() {
                return k;
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kamailio as a stateful proxy between UDP and TLS: requests that come in on UDP go to
/// `@TO_TLS@` (over TLS), those that come in on TLS go to `@TO_UDP@`; in-dialog requests follow
/// the Record-Route it put in (both sockets).
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
enable_tls=yes
tcp_accept_aliases=yes
@LISTEN@
mpath="@MODULES@/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
modparam("tls", "config", "@DIR@/tls.cfg")
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("OPTIONS") && $rU == $null) { sl_send_reply("200", "Kamailio up"); exit; }
  if (has_totag()) {
    if (loose_route()) { t_relay(); exit; }
    if (is_method("ACK") && t_check_trans()) { t_relay(); }
    exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
  record_route();
  if ($pr == "udp") {
    $du = "@TO_TLS@";
  } else {
    $ru = "@TO_UDP@";
  }
  if (!t_relay()) { sl_reply_error(); }
}
"#;

fn kamailio_cfg(listen: &[String], to_tls: &str, to_udp: &str) -> String {
    let listen: Vec<String> = listen.iter().map(|l| format!("listen={l}")).collect();
    KAMAILIO_CFG
        .replace("@LISTEN@", &listen.join("\n"))
        .replace("@TO_TLS@", to_tls)
        .replace("@TO_UDP@", to_udp)
}

/// Kamailio's TLS profiles: its own certificate; as a client it checks the peer's against the
/// test CA; as a server it asks for a client certificate when `mutual` (and refuses without).
fn kamailio_tls(pki: &Pki, mutual: bool) -> String {
    let yes_no = if mutual { "yes" } else { "no" };
    format!(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = {yes_no}\n\
         require_certificate = {yes_no}\nprivate_key = {key}\ncertificate = {cert}\nca_list = {ca}\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\n\
         ca_list = {ca}\n",
        key = pki.arg("kam.key"),
        cert = pki.arg("kam.pem"),
        ca = pki.arg("ca.pem"),
    )
}

/// (transport, leg, direction, first line, raw) of every SIP message of a call, in order.
fn messages(gw: &Gateway, call: i64) -> Vec<(String, String, String, String, String)> {
    gw.db()
        .prepare(
            "SELECT transport, leg, direction, first_line, raw FROM sip_messages \
             WHERE call = ?1 ORDER BY id",
        )
        .expect("query")
        .query_map([call], |r| {
            let raw: Vec<u8> = r.get(4)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                String::from_utf8_lossy(&raw).into_owned(),
            ))
        })
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn call_events(gw: &Gateway, call: i64) -> Vec<(String, String)> {
    gw.db()
        .prepare("SELECT kind, detail FROM call_events WHERE call = ?1 ORDER BY id")
        .expect("query")
        .query_map([call], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn start_tls_gateway(pki: &Pki, extra: &[&str]) -> (Gateway, SocketAddr) {
    let (cert, key) = (pki.arg("gw.pem"), pki.arg("gw.key"));
    let mut args = vec![
        "--listen",
        "tls:127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    args.extend_from_slice(extra);
    let mut gw = Gateway::start(&args);
    let tls = tls_addr(&mut gw);
    // Printed from the running gateway's loop: its SIGHUP handler is in place.
    gw.stdout_line("number lists: ");
    (gw, tls)
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// SIPp over UDP → Kamailio → the gateway over TLS: the call is answered, recorded and logged
/// as a TLS call, every message of the caller's leg on TLS (Via, sips: Contact). Halfway
/// through, the certificate files are replaced and SIGHUP reloads them: new connections get
/// the new certificate, while the call carries on over the connection it came on and ends
/// with the caller's BYE.
#[test]
fn a_caller_through_kamailio_over_tls_is_answered_recorded_and_survives_a_certificate_reload() {
    let pki = Pki::new();
    let (mut gw, tls) = start_tls_gateway(&pki, &[]);
    let kam_udp = common::free_udp_port();
    let kam_tls = free_tcp_port();
    let cfg = kamailio_cfg(
        &[
            format!("udp:127.0.0.1:{kam_udp}"),
            format!("tls:127.0.0.1:{kam_tls}"),
        ],
        &format!("sip:127.0.0.1:{};transport=tls", tls.port()),
        "sip:127.0.0.1:9",
    );
    let kamailio = Kamailio::start(&cfg, &kamailio_tls(&pki, false), kam_udp);
    assert_eq!(presented_fingerprint(tls), pki.fingerprint("gw.pem"));

    let kam: SocketAddr = format!("127.0.0.1:{kam_udp}").parse().expect("addr");
    let caller = std::thread::spawn(move || {
        common::sipp(
            kam,
            "uac_call.xml",
            false,
            &["-s", "112", "-m", "1", "-d", "6000"],
        )
    });
    common::wait_until(
        "the call over TLS is answered",
        Duration::from_secs(20),
        || {
            gw.db()
                .query_row(
                    "SELECT count(*) FROM calls WHERE answered_at IS NOT NULL",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                == 1
        },
    );
    std::fs::copy(pki.path("gw2.pem"), pki.path("gw.pem")).expect("new cert");
    std::fs::copy(pki.path("gw2.key"), pki.path("gw.key")).expect("new key");
    signal(gw.pid(), "HUP");
    let reloaded = gw.stdout_line("tls certificate ");
    assert_eq!(
        reloaded,
        format!(
            "tls certificate reloaded: sha256 {}",
            pki.fingerprint("gw2.pem")
        )
    );
    assert_eq!(
        presented_fingerprint(tls),
        pki.fingerprint("gw2.pem"),
        "a new connection gets the new certificate"
    );
    let out = caller.join().expect("caller thread");
    assert_sipp_ok(
        &out,
        &format!("caller via Kamailio; kamailio log:\n{}", kamailio.log()),
    );
    gw.stop();

    let (transport, answered, end, sha): (String, Option<i64>, String, Option<String>) = gw
        .db()
        .query_row(
            "SELECT transport, answered_at, end_reason, recording_sha256 FROM calls WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("call 1");
    assert_eq!(transport, "tls", "the call is logged as a TLS call");
    assert!(answered.is_some());
    // The caller hung up while the menu played.
    assert_eq!(end, "abandoned_in_ivr");
    assert!(sha.is_some(), "the recording is finalised with its SHA-256");
    let msgs = messages(&gw, 1);
    let caller_leg: Vec<_> = msgs.iter().filter(|m| m.1 == "A").collect();
    assert!(
        caller_leg.iter().all(|m| m.0 == "tls"),
        "every caller-leg message on TLS: {caller_leg:#?}"
    );
    let first_line = |dir: &str, prefix: &str| {
        caller_leg
            .iter()
            .find(|m| m.2 == dir && m.3.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {dir} {prefix}: {caller_leg:#?}"))
    };
    let invite = first_line("in", "INVITE");
    assert!(
        invite.4.contains("Via: SIP/2.0/TLS"),
        "Kamailio's Via says TLS: {}",
        invite.4
    );
    let ok = first_line("out", "SIP/2.0 200");
    assert!(
        ok.4.contains(&format!(
            "Contact: <sip:siaga@127.0.0.1:{};transport=tls>",
            tls.port()
        )),
        "our Contact is the TLS listener (sip: with transport=tls: the request was sip:): {}",
        ok.4
    );
    assert!(
        ok.4.contains("Record-Route: ") && ok.4.contains("transport=tls"),
        "Kamailio's Record-Route towards us says TLS: {}",
        ok.4
    );
    first_line("in", "BYE");
    first_line("out", "SIP/2.0 200");
    drop(kamailio);
}

/// The gateway → Kamailio over TLS → a SIPp agency. The first police target's certificate is
/// not the pinned one: the attempt fails with a log line saying so and the call fails over to
/// the second target (checked against the test CA and its pin, with our client certificate
/// for Kamailio's mutual TLS), which answers. The second call reuses the connection the first
/// opened to that target.
#[test]
fn an_agency_over_tls_is_bridged_and_a_certificate_that_misses_its_pin_fails_over() {
    let pki = Pki::new();
    let kam_udp = common::free_udp_port();
    let (kam_tls1, kam_tls2) = (free_tcp_port(), free_tcp_port());
    let ports = AgencyPorts::new();
    let cfg = kamailio_cfg(
        &[
            format!("udp:127.0.0.1:{kam_udp}"),
            format!("tls:127.0.0.1:{kam_tls1}"),
            format!("tls:127.0.0.1:{kam_tls2}"),
        ],
        "sip:127.0.0.1:9",
        &format!("sip:polisi@127.0.0.1:{}", ports.police2),
    );
    let kamailio = Kamailio::start(&cfg, &kamailio_tls(&pki, true), kam_udp);
    let client = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        pki.arg("client.pem"),
        pki.arg("client.key")
    );
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(
        plan_dir.path(),
        &ports,
        &[
            (
                &format!("uri = \"sip:polisi@127.0.0.1:{}\"", ports.police),
                &format!(
                    "uri = \"sips:polisi@127.0.0.1:{kam_tls1}\"\ntls_pin = \"{}\"\n{client}",
                    pki.fingerprint("rogue.pem")
                ),
            ),
            (
                &format!("uri = \"sip:polisi-piket@127.0.0.1:{}\"", ports.police2),
                &format!(
                    "uri = \"sips:polisi-piket@127.0.0.1:{kam_tls2}\"\ntls_ca = \"{}\"\n\
                     tls_pin = \"{}\"\n{client}",
                    pki.arg("ca.pem"),
                    pki.fingerprint("kam.pem")
                ),
            ),
        ],
    );
    let plan_arg = plan.display().to_string();
    let (mut gw, tls) = start_tls_gateway(&pki, &["--dialplan", &plan_arg]);
    let agency = sipp_agency("agency_answer.xml", ports.police2, &["-m", "2"]);
    let out = common::sipp(
        gw.udp,
        "uac_call.xml",
        false,
        &["-s", "110", "-m", "2", "-l", "1", "-d", "2000"],
    );
    assert_sipp_ok(
        &out,
        &format!(
            "two callers to the police; kamailio log:\n{}",
            kamailio.log()
        ),
    );
    finish_agency(agency, "the police over Kamailio (TLS)");
    gw.stop();

    let log = gw.log();
    assert!(
        log.contains("agency TLS certificate refused")
            && log.contains(&format!("not the tls_pin {}", pki.fingerprint("rogue.pem"))),
        "the refused certificate is logged with the reason:\n{log}"
    );
    let mut rports = Vec::new();
    for call in [1, 2] {
        let events = call_events(&gw, call);
        let failed = events
            .iter()
            .find(|(kind, detail)| kind == "agency_failed" && detail.starts_with("leg B1:"))
            .unwrap_or_else(|| panic!("call {call}: no failed first attempt: {events:#?}"));
        assert!(
            failed
                .1
                .contains(&format!("tls handshake with 127.0.0.1:{kam_tls1}"))
                && failed.1.contains("invalid peer certificate"),
            "call {call}: the attempt failed on the certificate: {failed:?}"
        );
        assert!(
            events.iter().any(|(kind, _)| kind == "agency_answered"),
            "call {call}: the second target answered: {events:#?}"
        );
        let msgs = messages(&gw, call);
        let answer = msgs
            .iter()
            .find(|m| m.1 == "B2" && m.2 == "in" && m.3.starts_with("SIP/2.0 200"))
            .unwrap_or_else(|| panic!("call {call}: no 200 from B2: {msgs:#?}"));
        assert_eq!(answer.0, "tls");
        let invite = msgs
            .iter()
            .find(|m| m.1 == "B2" && m.2 == "out" && m.3.starts_with("INVITE"))
            .expect("B2 INVITE");
        assert!(
            invite
                .3
                .starts_with(&format!("INVITE sips:polisi-piket@127.0.0.1:{kam_tls2}")),
            "{}",
            invite.3
        );
        assert!(
            invite
                .4
                .contains(&format!("Via: SIP/2.0/TLS 127.0.0.1:{};", tls.port()))
                && invite.4.contains(";alias"),
            "our Via names the TLS listener and offers the connection back: {}",
            invite.4
        );
        assert!(
            invite
                .4
                .contains(&format!("Contact: <sips:siaga@127.0.0.1:{}>", tls.port())),
            "{}",
            invite.4
        );
        // Kamailio puts the port our connection came from into our Via's rport.
        let rport = answer
            .4
            .lines()
            .find(|l| l.starts_with("Via:"))
            .and_then(|via| via.split(";rport=").nth(1))
            .map(|p| {
                p.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_else(|| panic!("no rport in {}", answer.4));
        rports.push(rport);
    }
    assert_eq!(
        rports[0], rports[1],
        "the second call went over the connection the first opened"
    );
    drop(kamailio);
}

/// What an outsider can do to the TLS listener costs bounded time and nothing else: plain
/// text instead of a handshake is dropped; clients that never finish their handshake hold one
/// of their source's few slots until the deadline (the others are reset at once), while a
/// client from another address gets its OPTIONS answered and a UDP call goes through; all of
/// it is reported in one line.
#[test]
fn garbage_and_handshakes_that_never_finish_are_bounded_and_other_calls_go_on() {
    let pki = Pki::new();
    let config = pki.path("siaga.toml");
    std::fs::write(
        &config,
        "[limits]\ntls_handshakes_per_source = 3\ntls_handshake_timeout_ms = 1500\n",
    )
    .expect("config");
    let config_arg = config.display().to_string();
    let (mut gw, tls) = start_tls_gateway(&pki, &["--config", &config_arg]);
    let ca = pki.path("ca.pem");
    assert_eq!(options_over_tls(tls, &ca, "127.0.0.1"), "SIP/2.0 200 OK");

    // Plain SIP on the TLS port: the handshake fails and the connection is closed.
    let mut garbage = TcpStream::connect(tls).expect("connect");
    garbage
        .write_all(b"INVITE sip:112@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .expect("write");
    assert!(
        closed_within(&mut garbage, Duration::from_secs(3)).is_some(),
        "garbage instead of a handshake is dropped"
    );

    // Eight clients from 127.0.0.2 send the first bytes of a ClientHello and stop.
    let stalled_at = Instant::now();
    // Each watched from its own thread: when did the gateway close it?
    let stalled: Vec<std::thread::JoinHandle<Option<Duration>>> = (0..8)
        .map(|_| {
            let mut stream = stalled_client(tls);
            std::thread::spawn(move || {
                closed_within(&mut stream, Duration::from_secs(8)).map(|()| stalled_at.elapsed())
            })
        })
        .collect();
    // Meanwhile another address (127.0.0.1) is served, over TLS and over UDP.
    assert_eq!(options_over_tls(tls, &ca, "127.0.0.1"), "SIP/2.0 200 OK");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "112", "-m", "1", "-d", "200"],
    );
    assert_sipp_ok(&out, "a UDP call while TLS handshakes hang");

    let ends: Vec<Duration> = stalled
        .into_iter()
        .map(|t| {
            t.join()
                .expect("watcher")
                .expect("every stalled connection is closed")
        })
        .collect();
    let refused = ends
        .iter()
        .filter(|d| **d < Duration::from_millis(1000))
        .count();
    assert_eq!(
        refused, 5,
        "all but the source's 3 slots refused at once: {ends:?}"
    );
    let held = ends
        .iter()
        .filter(|d| **d >= Duration::from_millis(1400))
        .count();
    assert_eq!(
        held, 3,
        "the source's 3 slots are held until the 1.5 s deadline, the rest refused: {ends:?}"
    );
    assert!(
        ends.iter().all(|d| *d < Duration::from_secs(6)),
        "none outlives the deadline by much: {ends:?}"
    );
    // After the deadline the source has its slots back: three new handshakes are held, not
    // reset.
    let mut again: Vec<TcpStream> = (0..3).map(|_| stalled_client(tls)).collect();
    // (3 × 300 ms stays under the 1.5 s deadline of the first.)
    let again_at = Instant::now();
    for (i, stream) in again.iter_mut().enumerate() {
        let mut b = [0u8; 64];
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let r = stream.read(&mut b);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a slot given back after the deadline is free again: {i} {r:?} {:?}",
            again_at.elapsed()
        );
    }
    common::wait_until("the limits report", Duration::from_secs(25), || {
        gw.log().contains("TLS handshake(s) failed or timed out")
    });
    let log = gw.log();
    assert!(
        log.contains("5 TLS connection(s) refused: the source had its share in progress"),
        "{log}"
    );
    // The same on /metrics, for the dashboards: 3 + 3 held until their deadline.
    let http = gw.http.expect("the HTTP listener");
    let handshakes = |metrics: &str, outcome: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("siaga_tls_handshakes_total{")
                    && l.contains("side=\"server\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    common::wait_until("6 handshake timeouts", Duration::from_secs(10), || {
        handshakes(&scrape(http), "timeout") == 6.0
    });
    let metrics = scrape(http);
    assert_eq!(handshakes(&metrics, "refused"), 5.0, "{metrics}");
    assert_eq!(
        handshakes(&metrics, "failed"),
        1.0,
        "the garbage: {metrics}"
    );
    assert_eq!(
        handshakes(&metrics, "ok"),
        2.0,
        "the OPTIONS clients: {metrics}"
    );
    gw.stop();
}

/// The text of `/metrics`.
fn scrape(http: SocketAddr) -> String {
    let mut stream = TcpStream::connect(http).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// A client from 127.0.0.2 that sends the first bytes of a ClientHello and stops.
fn stalled_client(tls: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().expect("addr").into())
        .expect("bind 127.0.0.2");
    socket.connect(&tls.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    // A refused connection may be reset before this is written.
    let _ = stream.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    stream
}

/// How a connection ended, as seen by the client: `Some` when the peer closed or reset it
/// within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<()> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match stream.read(&mut buf) {
            Ok(0) => return Some(()),
            // An alert, then the close.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(()),
        }
    }
}

/// A key that does not fit its certificate stops the start with both file names; on SIGHUP a
/// broken certificate file is refused and the one in force stays.
#[test]
fn a_bad_certificate_or_key_is_refused_at_start_and_on_reload() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("dir");
    let out: Output = Command::new(env!("CARGO_BIN_EXE_siaga"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--listen", "tls:127.0.0.1:0", "--http", "off"])
        .args([
            "--tls-cert",
            &pki.arg("gw.pem"),
            "--tls-key",
            &pki.arg("rogue.key"),
        ])
        .arg("--db")
        .arg(dir.path().join("siaga.db"))
        .arg("--recordings")
        .arg(dir.path().join("rec"))
        .stdin(Stdio::null())
        .output()
        .expect("siaga");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a key of another cert");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "refused before anything listens"
    );
    assert!(
        stderr.contains(&pki.arg("gw.pem"))
            && stderr.contains(&pki.arg("rogue.key"))
            && stderr.contains("does not fit"),
        "{stderr}"
    );

    let (mut gw, tls) = start_tls_gateway(&pki, &[]);
    std::fs::write(pki.path("gw.pem"), "not a certificate\n").expect("break the cert");
    signal(gw.pid(), "HUP");
    assert_eq!(
        gw.stdout_line("tls certificate "),
        "tls certificate rejected, keeping the old one"
    );
    assert_eq!(
        options_over_tls(tls, &pki.path("ca.pem"), "127.0.0.1"),
        "SIP/2.0 200 OK"
    );
    assert!(
        gw.log().contains("holds no PEM certificate"),
        "{}",
        gw.log()
    );
    gw.stop();
}

/// RFC 5923 over TLS: a carrier that opened a connection and puts `;alias` in its Via gets
/// our requests for that address on its connection, but only when the certificate it
/// presented passes that target's checks (here its pin). An impostor's alias is ignored: the
/// gateway connects to the address itself (nothing listens there), fails over, and the
/// impostor sees nothing.
#[test]
fn a_tls_alias_is_honoured_only_for_a_peer_whose_certificate_passes_the_targets_pin() {
    let pki = Pki::new();
    let ports = AgencyPorts::new();
    let sbc_port = free_tcp_port();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(
        plan_dir.path(),
        &ports,
        &[(
            &format!(
                "uri = \"sip:polisi@127.0.0.1:{}\"\nring_timeout = \"20s\"",
                ports.police
            ),
            &format!(
                "uri = \"sips:polisi@127.0.0.1:{sbc_port}\"\nring_timeout = \"2s\"\ntls_pin = \"{}\"",
                pki.fingerprint("kam.pem")
            ),
        )],
    );
    let plan_arg = plan.display().to_string();
    let (mut gw, tls) = start_tls_gateway(&pki, &["--dialplan", &plan_arg]);
    let ca = pki.path("ca.pem");
    let via = format!("127.0.0.1:{sbc_port}");

    let mut impostor = TlsClient::connect(
        tls,
        &ca,
        Some((&pki.path("rogue.pem"), &pki.path("rogue.key"))),
    );
    assert_eq!(impostor.options(tls, &via, true), "SIP/2.0 200 OK");
    let agency = sipp_agency("agency_answer.xml", ports.police2, &["-m", "1"]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "110", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(
        &out,
        "a police call while an impostor claims the target's address",
    );
    assert_eq!(
        impostor.wait_for("INVITE", Duration::from_millis(200)),
        None,
        "the impostor's connection carried no INVITE"
    );
    gw.wait_call_ended(1);
    let events = call_events(&gw, 1);
    assert!(
        events.iter().any(|(kind, detail)| kind == "agency_failed"
            && detail.starts_with("leg B1:")
            && detail.contains(&format!("tls connect to 127.0.0.1:{sbc_port}"))),
        "the gateway tried the address itself: {events:#?}"
    );
    drop(impostor);

    let mut sbc = TlsClient::connect(tls, &ca, Some((&pki.path("kam.pem"), &pki.path("kam.key"))));
    assert_eq!(sbc.options(tls, &via, true), "SIP/2.0 200 OK");
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "110", "-m", "1", "-d", "500"],
    );
    assert_sipp_ok(&out, "a police call with the carrier's connection aliased");
    let invite = sbc
        .wait_for("INVITE", Duration::from_secs(1))
        .expect("the INVITE came on the carrier's own connection");
    assert!(
        invite.starts_with(&format!("INVITE sips:polisi@127.0.0.1:{sbc_port} SIP/2.0")),
        "{invite}"
    );
    // The caller hangs up before the carrier answers anything: no CANCEL is due before a
    // provisional response (RFC 3261 §9.1), and the second target is not rung.
    finish_agency(
        agency,
        "the second police target, after the first call's failed attempt",
    );
    gw.stop();
}

/// baresip (Debian `baresip-core`) as a caller over TLS: it dials 112, is answered, talks (a
/// prompt file as its voice) and hangs up when the file ends. The call is logged as TLS from
/// INVITE to BYE and its recording holds the caller's voice. (baresip 1.0 loads the CA but
/// does not refuse a certificate that fails it — tried with the impostor's CA — so this shows
/// a softphone's TLS working with the gateway, not a check of our certificate; s_client and
/// Kamailio above do that.)
#[test]
fn baresip_calls_over_tls_and_is_answered_and_recorded() {
    let pki = Pki::new();
    let (mut gw, tls) = start_tls_gateway(&pki, &[]);
    let home = tempfile::tempdir().expect("dir");
    let voice = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/prompts/id/all-busy.wav");
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:0\nsip_cafile {ca}\nsip_trans_def tls\n\
         audio_player aufile,{heard}\naudio_source aufile,{voice}\n\
         audio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n\
         module aufile.so\nmodule menu.so\nmodule account.so\nmodule contact.so\n",
        ca = pki.arg("ca.pem"),
        heard = home.path().join("heard.wav").display(),
        voice = voice.display(),
    );
    std::fs::write(home.path().join("config"), config).expect("config");
    std::fs::write(
        home.path().join("accounts"),
        "<sip:caller@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMA\n",
    )
    .expect("accounts");
    std::fs::write(home.path().join("contacts"), "").expect("contacts");
    let out = Command::new("baresip")
        .arg("-f")
        .arg(home.path())
        .args(["-e", &format!("/dial sip:112@127.0.0.1:{}", tls.port())])
        // Quits by itself after this, whatever happened.
        .args(["-t", "15"])
        .stdin(Stdio::null())
        .output()
        .expect("baresip is installed (apt-get install baresip-core)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Call established") && said.contains("terminated"),
        "baresip's call: {said}"
    );
    gw.stop();

    let (transport, answered, end, sha, ms, path): (
        String,
        Option<i64>,
        String,
        Option<String>,
        i64,
        String,
    ) = gw
        .db()
        .query_row(
            "SELECT transport, answered_at, end_reason, recording_sha256, recording_ms, \
             recording_path FROM calls WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .expect("call 1");
    assert_eq!(transport, "tls");
    assert!(answered.is_some());
    // baresip hung up while the menu played.
    assert_eq!(end, "abandoned_in_ivr");
    assert!(sha.is_some() && ms > 2000, "recorded: {ms} ms");
    let msgs = messages(&gw, 1);
    assert!(msgs.iter().all(|m| m.0 == "tls"), "{msgs:#?}");
    for (dir, first) in [("in", "INVITE"), ("in", "ACK"), ("in", "BYE")] {
        assert!(
            msgs.iter().any(|m| m.2 == dir && m.3.starts_with(first)),
            "no {first} over TLS: {msgs:#?}"
        );
    }
    // The caller's voice is on the left channel.
    let mut wav = hound::WavReader::open(&path).expect("recording");
    let left: Vec<i32> = wav
        .samples::<i16>()
        .step_by(2)
        .map(|s| i32::from(s.expect("sample")).abs())
        .collect();
    let loud = left.iter().filter(|s| **s > 1000).count();
    assert!(
        loud > 800,
        "the caller's voice is recorded: {loud} loud samples"
    );
}

/// A target whose certificate is not from the CA its plan entry names (`openssl s_server`
/// presenting a leaf of another CA, with the right names) is a failed attempt with the reason on
/// the call's timeline, and the call goes on to the next target (here over UDP) at once.
#[test]
fn a_target_whose_certificate_is_not_from_its_ca_fails_over_at_once() {
    let pki = Pki::new();
    let ports = AgencyPorts::new();
    let impostor_port = free_tcp_port();
    let mut impostor = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{impostor_port}"))
        .args(["-cert", &pki.arg("imp.pem"), "-key", &pki.arg("imp.key")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    common::wait_until("s_server listens", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", impostor_port)).is_ok()
    });
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(
        plan_dir.path(),
        &ports,
        &[(
            &format!("uri = \"sip:polisi@127.0.0.1:{}\"", ports.police),
            &format!(
                "uri = \"sips:polisi@127.0.0.1:{impostor_port}\"\ntls_ca = \"{}\"",
                pki.arg("ca.pem")
            ),
        )],
    );
    let plan_arg = plan.display().to_string();
    let (mut gw, _tls) = start_tls_gateway(&pki, &["--dialplan", &plan_arg]);
    let agency = sipp_agency("agency_answer.xml", ports.police2, &["-m", "1"]);
    let out = gw.sipp(
        "uac_call.xml",
        false,
        &["-s", "110", "-m", "1", "-d", "1000"],
    );
    assert_sipp_ok(&out, "a police call whose first target is an impostor");
    finish_agency(agency, "the second police target");
    gw.stop();
    let _ = impostor.kill();
    let _ = impostor.wait();
    let events = call_events(&gw, 1);
    let failed = events
        .iter()
        .find(|(kind, detail)| kind == "agency_failed" && detail.starts_with("leg B1:"))
        .unwrap_or_else(|| panic!("no failed first attempt: {events:#?}"));
    assert!(
        failed.1.contains("invalid peer certificate") && failed.1.contains("UnknownIssuer"),
        "{failed:?}"
    );
    assert!(
        events.iter().any(|(kind, _)| kind == "agency_answered"),
        "{events:#?}"
    );
    assert!(gw.log().contains("agency TLS certificate refused"));
}
