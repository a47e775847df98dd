//! SDP for the caller's leg. TEMPORARY minimal implementation until siaga-media's
//! offer/answer lands; it will be replaced by calls into `siaga_media::sdp`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::call::LocalSession;
use crate::io::MediaSession;

pub struct Negotiated {
    pub local: LocalSession,
    pub warnings: Vec<String>,
}

fn render(local: SocketAddr, session_id: u64, pt_order: &[u8], dtmf: u8, ptime: u64) -> String {
    let ip = match local.ip() {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    };
    let pts: Vec<String> = pt_order.iter().map(u8::to_string).collect();
    let mut s = format!(
        "v=0\r\no=siaga {session_id} {session_id} IN {ip}\r\ns=Siaga 112\r\nc=IN {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {} {dtmf}\r\n",
        local.port(),
        pts.join(" ")
    );
    for pt in pt_order {
        s.push_str(&format!(
            "a=rtpmap:{pt} {}/8000\r\n",
            if *pt == 8 { "PCMA" } else { "PCMU" }
        ));
    }
    s.push_str(&format!("a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-16\r\na=ptime:{ptime}\r\na=sendrecv\r\n"));
    s
}

pub fn answer(offer: &[u8], local: SocketAddr, session_id: u64) -> Negotiated {
    let remote = remote_of(offer);
    let (pt, dtmf, ptime) = match &remote {
        Some(m) => (
            m.payload_type,
            m.dtmf_payload_type.unwrap_or(101),
            m.ptime.as_millis() as u64,
        ),
        None => (8, 101, 20),
    };
    let media = remote.unwrap_or(MediaSession {
        remote: None,
        payload_type: 8,
        codec: "PCMA",
        dtmf_payload_type: Some(101),
        ptime: Duration::from_millis(20),
        send: true,
    });
    Negotiated {
        local: LocalSession {
            sdp: render(local, session_id, &[pt], dtmf, ptime),
            media,
        },
        warnings: Vec::new(),
    }
}

pub fn offer(local: SocketAddr, session_id: u64) -> LocalSession {
    LocalSession {
        sdp: render(local, session_id, &[8, 0], 101, 20),
        media: MediaSession {
            remote: None,
            payload_type: 8,
            codec: "PCMA",
            dtmf_payload_type: Some(101),
            ptime: Duration::from_millis(20),
            send: true,
        },
    }
}

pub fn remote_of(sdp: &[u8]) -> Option<MediaSession> {
    let text = String::from_utf8_lossy(sdp);
    let mut ip: Option<IpAddr> = None;
    let mut port = None;
    let mut pts: Vec<u8> = Vec::new();
    let mut dtmf = None;
    let mut ptime = 20;
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix("c=IN ") {
            ip = c.split_whitespace().nth(1).and_then(|a| a.parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            let mut it = m.split_whitespace();
            port = it.next().and_then(|p| p.parse::<u16>().ok());
            pts = it.skip(1).filter_map(|p| p.parse().ok()).collect();
        } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
            if r.to_ascii_lowercase().contains("telephone-event") {
                dtmf = r.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        } else if let Some(p) = line.strip_prefix("a=ptime:") {
            ptime = p.trim().parse().unwrap_or(20);
        }
    }
    let pt = pts.iter().copied().find(|p| *p == 8 || *p == 0)?;
    Some(MediaSession {
        remote: match (ip, port) {
            (Some(ip), Some(port)) if port != 0 => Some(SocketAddr::new(ip, port)),
            _ => None,
        },
        payload_type: pt,
        codec: if pt == 8 { "PCMA" } else { "PCMU" },
        dtmf_payload_type: dtmf,
        ptime: Duration::from_millis(ptime),
        send: true,
    })
}
