//! SIP capture (HEP v3) end to end: a SIPp caller (over TCP) → the real gateway → a SIPp
//! agency (over UDP), with sngrep as the HEP collector (`sngrep -N -L udp:…` saving what it
//! receives with `-O`), and with a plain UDP socket reading the packets' chunks.
//! Needs `sngrep` (Debian package `sngrep`).

mod common;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{AgencyPorts, Gateway, assert_sipp_ok, finish_agency, sipp_agency, test_plan};

/// A logged SIP message of a call: leg, direction, transport, local and remote address, bytes.
struct Logged {
    leg: String,
    inbound: bool,
    tcp: bool,
    local: SocketAddr,
    remote: SocketAddr,
    raw: Vec<u8>,
}

impl Logged {
    /// (source, destination) as a capture on the wire sees them.
    fn ends(&self) -> (SocketAddr, SocketAddr) {
        if self.inbound {
            (self.remote, self.local)
        } else {
            (self.local, self.remote)
        }
    }
}

fn logged_messages(db: &rusqlite::Connection) -> Vec<Logged> {
    db.prepare(
        "SELECT leg, direction, transport, local, remote, raw FROM sip_messages \
         WHERE call = 1 ORDER BY id",
    )
    .expect("query")
    .query_map([], |r| {
        let addr = |s: String| s.parse::<SocketAddr>().expect("logged address");
        Ok(Logged {
            leg: r.get(0)?,
            inbound: r.get::<_, String>(1)? == "in",
            tcp: r.get::<_, String>(2)? == "tcp",
            local: addr(r.get(3)?),
            remote: addr(r.get(4)?),
            raw: r.get(5)?,
        })
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// One SIP message as a collector stored or received it.
#[derive(Debug)]
struct Seen {
    source: SocketAddr,
    destination: SocketAddr,
    /// `None`: the collector does not keep it (sngrep saves every HEP packet it receives as
    /// UDP in its pcap, whatever the packet's IP protocol chunk said).
    tcp: Option<bool>,
    payload: Vec<u8>,
}

/// The packets of a pcap file as sngrep writes what it receives over HEP: Ethernet, IPv4 or
/// IPv6, UDP or TCP.
fn read_pcap(path: &Path) -> Vec<Seen> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(header) = bytes.get(at..at + 16) {
        let caplen = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        if let Some(seen) = parse_frame(frame) {
            out.push(seen);
        }
    }
    out
}

fn parse_frame(frame: &[u8]) -> Option<Seen> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (proto, source, destination, rest) = match ethertype {
        0x0800 => {
            let header_len = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let rest = ip.get(header_len..total.max(header_len))?;
            (*ip.get(9)?, src.into(), dst.into(), rest)
        }
        0x86dd => {
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            (
                *ip.get(6)?,
                std::net::IpAddr::from(src),
                std::net::IpAddr::from(dst),
                ip.get(40..40 + len)?,
            )
        }
        _ => return None,
    };
    let port = |at: usize| Some(u16::from_be_bytes([*rest.get(at)?, *rest.get(at + 1)?]));
    let payload = match proto {
        17 => rest.get(8..)?,
        6 => rest.get(usize::from(rest.get(12)? >> 4) * 4..)?,
        _ => return None,
    };
    Some(Seen {
        source: SocketAddr::new(source, port(0)?),
        destination: SocketAddr::new(destination, port(2)?),
        tcp: None,
        payload: payload.to_vec(),
    })
}

/// Which logged messages no capture matches (same bytes, same ends, same transport).
fn missing<'a>(logged: &'a [Logged], seen: &[Seen]) -> Vec<&'a Logged> {
    logged
        .iter()
        .filter(|m| {
            !seen.iter().any(|s| {
                s.payload == m.raw
                    && (s.source, s.destination) == m.ends()
                    && s.tcp.is_none_or(|tcp| tcp == m.tcp)
            })
        })
        .collect()
}

fn first_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Runs one bridged call: the caller over TCP dials the fire brigade (straight to its
/// route), the fire agency (SIPp, UDP) answers, the caller hangs up after 1.5 s. Returns the
/// stopped gateway and the agency's port.
fn bridged_call(flags: &[&str]) -> (Gateway, u16) {
    let ports = AgencyPorts::new();
    let plan_dir = tempfile::tempdir().expect("dir");
    let plan = test_plan(plan_dir.path(), &ports, &[]);
    let mut args = vec!["--dialplan", plan.to_str().expect("utf8")];
    args.extend_from_slice(flags);
    let mut gw = Gateway::start(&args);
    let fire = sipp_agency("agency_answer.xml", ports.fire, &["-m", "1"]);
    let out = gw.sipp(
        "uac_call_urn.xml",
        true,
        &["-s", "urn:service:sos.fire", "-m", "1", "-d", "1500"],
    );
    assert_sipp_ok(&out, "caller over TCP");
    finish_agency(fire, "fire answers");
    // A graceful stop sends what the capture still holds before the gateway exits.
    gw.stop();
    (gw, ports.fire)
}

/// Both legs' INVITE, 200, ACK and BYE (and the BYE's 200) are among `seen`, each with its
/// leg's Call-ID; the caller's leg on the gateway's TCP address, the agency's on UDP.
fn assert_both_legs(gw: &Gateway, fire_port: u16, logged: &[Logged], seen: &[Seen]) {
    let caller_call_id: String = gw
        .db()
        .query_row("SELECT call_id FROM calls WHERE id = 1", [], |r| r.get(0))
        .expect("call 1");
    let agency_invite = logged
        .iter()
        .find(|m| m.leg == "B1" && !m.inbound && first_line(&m.raw).starts_with("INVITE"))
        .expect("the agency leg's INVITE in the call log");
    let agency_call_id = header(&String::from_utf8_lossy(&agency_invite.raw), "Call-ID")
        .expect("Call-ID")
        .to_owned();
    assert_ne!(
        caller_call_id, agency_call_id,
        "the B2BUA's legs have their own Call-IDs"
    );
    let fire: SocketAddr = ([127, 0, 0, 1], fire_port).into();
    for (leg, call_id, tcp, peer, gateway) in [
        ("caller", &caller_call_id, true, None, gw.tcp),
        ("agency", &agency_call_id, false, Some(fire), gw.udp),
    ] {
        let of_leg: Vec<(&Seen, String)> = seen
            .iter()
            .filter_map(|s| {
                let text = String::from_utf8_lossy(&s.payload).into_owned();
                (header(&text, "Call-ID") == Some(call_id.as_str())).then_some((s, text))
            })
            .collect();
        for (method, status_of) in [
            ("INVITE ", None),
            ("SIP/2.0 200", Some("INVITE")),
            ("ACK ", None),
            ("BYE ", None),
            ("SIP/2.0 200", Some("BYE")),
        ] {
            let found = of_leg.iter().find(|(_, text)| {
                text.starts_with(method)
                    && status_of
                        .is_none_or(|m| header(text, "CSeq").is_some_and(|c| c.ends_with(m)))
            });
            let Some((s, _)) = found else {
                panic!("{leg} leg: no {method} {status_of:?} with Call-ID {call_id} captured");
            };
            assert!(
                s.tcp.is_none_or(|t| t == tcp),
                "{leg} leg {method}: transport"
            );
            assert!(
                s.source == gateway || s.destination == gateway,
                "{leg} leg {method}: {s:?} does not involve the gateway at {gateway}"
            );
            if let Some(peer) = peer {
                assert!(s.source == peer || s.destination == peer, "{leg}: {s:?}");
            }
        }
    }
}

/// Stops sngrep (SIGTERM) and waits for it.
fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

#[test]
fn sngrep_receives_every_sip_message_of_both_legs_over_hep() {
    let collector_port = common::free_udp_port();
    let dir = tempfile::tempdir().expect("dir");
    let pcap = dir.path().join("capture.pcap");
    // -N: no interface, just capture; -L: listen for HEP; -O: save what it receives; -F: no
    // config file (a password set there would refuse our packets). Without
    // -q it prints its dialog count every half second: the test reads those lines to know it
    // is alive and to look at the file between them, without sleeping.
    let mut sngrep = Command::new("sngrep")
        .args(["-N", "-F", "-L", &format!("udp:127.0.0.1:{collector_port}")])
        .arg("-O")
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sngrep is installed (apt-get install sngrep)");
    let mut progress = sngrep.stdout.take().expect("stdout");
    let mut line = [0u8; 64];
    // sngrep prints its first count once it has set up its HEP socket.
    let _ = progress.read(&mut line);
    let hep = format!("udp:127.0.0.1:{collector_port}");
    let (gw, fire_port) = bridged_call(&["--hep", &hep]);
    let logged = logged_messages(&gw.db());
    assert!(
        logged.iter().any(|m| m.leg == "A") && logged.iter().any(|m| m.leg == "B1"),
        "the call log holds both legs"
    );
    // Everything was sent before the gateway exited; sngrep saves it as it reads it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = read_pcap(&pcap);
    while !missing(&logged, &seen).is_empty() && Instant::now() < deadline {
        if progress.read(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen = read_pcap(&pcap);
    }
    stop(sngrep);
    let seen = read_pcap(&pcap);
    let not_captured: Vec<String> = missing(&logged, &seen)
        .iter()
        .map(|m| {
            format!(
                "{} {} {}",
                m.leg,
                if m.inbound { "in" } else { "out" },
                first_line(&m.raw)
            )
        })
        .collect();
    assert!(
        not_captured.is_empty(),
        "logged but not in sngrep's capture: {not_captured:?}\n({} captured)",
        seen.len()
    );
    assert_both_legs(&gw, fire_port, &logged, &seen);
}

/// The chunks sngrep does not keep: the capture agent id and password from the config file's
/// `[capture]` section, and the Call-ID as correlation id, on every packet.
#[test]
fn every_packet_carries_the_agent_id_the_password_and_its_call_id() {
    let collector = UdpSocket::bind("127.0.0.1:0").expect("collector");
    collector
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let config_dir = tempfile::tempdir().expect("dir");
    let config = config_dir.path().join("siaga.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nhep = \"udp:{}\"\nhep_agent_id = 4242\nhep_password = \"homer-pw\"\n",
            collector.local_addr().expect("addr")
        ),
    )
    .expect("config");
    let (gw, fire_port) = bridged_call(&["--config", config.to_str().expect("utf8")]);
    let logged = logged_messages(&gw.db());
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while !missing(&logged, &seen).is_empty() {
        let n = collector
            .recv(&mut buf)
            .expect("a HEP packet for every logged message");
        let packet = siaga_hep::decode::decode(&buf[..n]).expect("a HEP v3 packet");
        assert_eq!(packet.agent, siaga_hep::CaptureAgentId(4242));
        assert_eq!(packet.auth_key.as_deref(), Some(&b"homer-pw"[..]));
        assert_eq!(packet.proto_type, siaga_hep::ProtoType::SIP);
        let text = String::from_utf8_lossy(&packet.payload).into_owned();
        assert_eq!(
            packet.correlation_id.as_deref(),
            header(&text, "Call-ID").map(str::as_bytes),
            "the correlation id is the message's Call-ID"
        );
        seen.push(Seen {
            source: packet.source,
            destination: packet.destination,
            tcp: Some(packet.proto == siaga_hep::IpProto::Tcp),
            payload: packet.payload,
        });
    }
    assert_both_legs(&gw, fire_port, &logged, &seen);
}

/// The live check behind `crates/hep/tests/data`: a real Kamailio (Debian `kamailio`, its
/// siptrace module in HEP v3 mode with an auth key and the Call-ID as correlation id) traces
/// an INVITE to our UDP collector, and our encoder, given the fields Kamailio put in its packet
/// (the time it received the INVITE is the one a replay cannot choose), writes the same bytes.
#[test]
fn our_encoder_writes_the_packet_a_live_kamailio_siptrace_sends() {
    let dir = tempfile::tempdir().expect("dir");
    let collector = UdpSocket::bind("127.0.0.1:0").expect("collector");
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let collector_port = collector.local_addr().expect("addr").port();
    let kamailio_port = common::free_udp_port();
    let modules = std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .find(|p| p.join("siptrace.so").exists())
        .expect("kamailio with its siptrace module is installed (apt-get install kamailio)");
    let cfg = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/hep/tests/data/kamailio-siptrace.cfg"),
    )
    .expect("cfg")
    .replace("fork=yes", "fork=no")
    .replace(
        "udp:127.0.0.2:5070",
        &format!("udp:127.0.0.1:{kamailio_port}"),
    )
    .replace(
        "sip:127.0.0.1:9062",
        &format!("sip:127.0.0.1:{collector_port}"),
    )
    .replace(
        "/usr/lib/x86_64-linux-gnu/kamailio/modules/",
        &format!("{}/", modules.display()),
    );
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).expect("write cfg");
    let kamailio = Command::new("kamailio")
        .args(["-f", cfg_path.to_str().expect("utf8"), "-DD", "-E", "-w"])
        .arg(dir.path())
        .args(["-P", dir.path().join("k.pid").to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kamailio is installed (apt-get install kamailio)");
    let invite = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/hep/tests/data/kamailio-invite.sip"),
    )
    .expect("invite");
    let caller = UdpSocket::bind("127.0.0.1:0").expect("caller");
    let kamailio_addr: SocketAddr = format!("127.0.0.1:{kamailio_port}").parse().expect("addr");
    // Kamailio needs a moment to start: the INVITE is sent again until its trace comes back.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 65_536];
    let packet = loop {
        assert!(Instant::now() < deadline, "no HEP packet from kamailio");
        let _ = caller.send_to(&invite, kamailio_addr);
        if let Ok((n, _)) = collector.recv_from(&mut buf) {
            break buf[..n].to_vec();
        }
    };
    stop(kamailio);
    let theirs = siaga_hep::decode::decode(&packet).expect("kamailio sent HEP v3");
    assert_eq!(theirs.payload, invite, "the traced message is the INVITE");
    assert_eq!(theirs.source, caller.local_addr().expect("addr"));
    let ours = siaga_hep::encode(&siaga_hep::Capture {
        source: theirs.source,
        destination: theirs.destination,
        proto: siaga_hep::IpProto::Udp,
        time: theirs.time,
        agent: siaga_hep::CaptureAgentId(2001),
        proto_type: siaga_hep::ProtoType::SIP,
        auth_key: Some(b"s3cret"),
        correlation_id: siaga_hep::call_id_of(&invite),
        payload: &invite,
    })
    .expect("encodes");
    assert_eq!(
        ours, packet,
        "ours:\n{ours:02x?}\nkamailio's:\n{packet:02x?}"
    );
}
