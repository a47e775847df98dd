//! SDP for the caller's leg: the caller's offer becomes our answer and the media session the
//! shell runs. Emergency first: an offer we cannot fully understand is still answered with
//! G.711 (siaga-media never fails an answer), and each reason is logged on the timeline.

use std::net::SocketAddr;

use siaga_media::sdp::{self, LocalAudio};

use crate::io::MediaSession;

/// The SDP we answered with, kept to answer re-INVITEs with the same session.
#[derive(Debug, Clone)]
pub struct LocalSession {
    pub sdp: String,
    pub media: MediaSession,
}

/// Our answer and any warnings worth a timeline entry.
pub struct Negotiated {
    pub local: LocalSession,
    pub warnings: Vec<String>,
}

fn local_audio(local: SocketAddr, session_id: u64) -> LocalAudio {
    LocalAudio {
        addr: local.ip(),
        port: local.port(),
        session_id,
        session_version: session_id,
    }
}

/// Answers the caller's offer.
pub fn answer(offer: &[u8], local: SocketAddr, session_id: u64) -> Negotiated {
    let answer = sdp::answer(offer, &local_audio(local, session_id));
    Negotiated {
        warnings: answer.warnings.iter().map(ToString::to_string).collect(),
        local: LocalSession {
            sdp: answer.sdp,
            media: answer.audio,
        },
    }
}

/// Our offer for an INVITE that came without SDP (the answer arrives in the ACK).
pub fn offer(local: SocketAddr, session_id: u64) -> LocalSession {
    let sdp = sdp::offer(&local_audio(local, session_id));
    // Until the caller answers we know our own choice but not where to send.
    let media = sdp::accept_answer(sdp.as_bytes())
        .map(|a| MediaSession { remote: None, ..a })
        .unwrap_or_else(|_| MediaSession::fallback());
    LocalSession { sdp, media }
}

/// The caller's SDP in an ACK, re-INVITE or UPDATE: the remote side of the session.
pub fn remote_of(sdp: &[u8]) -> Option<MediaSession> {
    sdp::accept_answer(sdp).ok()
}
