//! SDP offer/answer (RFC 3264) for the one audio stream of a call leg.
//!
//! Parsing goes through `rtc-sdp`; when it rejects an offer (it is strict about line order and
//! field counts, and real phones are not), a lenient line scanner reads the same facts, so a
//! caller's slightly odd SDP still gets media. Static payload types come from our own table
//! because `rtc-sdp` does not know them without `a=rtpmap` (`m=audio 4000 RTP/AVP 8 0`).
//!
//! [`answer`] never fails: an emergency call is answered even when the offer is unreadable or
//! offers no G.711 — we then answer PCMA, PCMU and telephone-event, say why in a warning, and
//! trust that the caller's phone speaks G.711 anyway. Comfort noise and silence suppression
//! are neither offered nor accepted: the caller must always hear a continuous stream.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

use crate::g711::Codec;
use crate::rtp::PayloadType;

/// Dynamic payload type we use for telephone-event when we choose it (offers, and answers to
/// offers that did not include it).
pub const OUR_TELEPHONE_EVENT_PT: PayloadType = PayloadType(101);
/// Packet time used when the peer states none (RFC 3551 default for G.711).
pub const DEFAULT_PTIME: Duration = Duration::from_millis(20);
/// Shortest packet time we accept from a peer.
pub const MIN_PTIME: Duration = Duration::from_millis(10);
/// Longest packet time we accept from a peer.
pub const MAX_PTIME: Duration = Duration::from_millis(60);
/// The telephone-events we receive: the 16 DTMF keys.
const TELEPHONE_EVENTS: &str = "0-15";

/// Our side of the audio stream, as it goes into the `o=`, `c=` and `m=` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAudio {
    /// Address our RTP socket is reachable at.
    pub addr: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// `o=` session id: random, fixed for the dialog.
    pub session_id: u64,
    /// `o=` session version: must grow by one each time we send a changed SDP.
    pub session_version: u64,
}

impl LocalAudio {
    /// The same session with the version incremented, for the next SDP we send in this dialog.
    pub fn next_version(&self) -> LocalAudio {
        LocalAudio {
            session_version: self.session_version.wrapping_add(1),
            ..*self
        }
    }
}

/// Media direction, from the point of view of the side that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive.
    SendRecv,
    /// Only send.
    SendOnly,
    /// Only receive.
    RecvOnly,
    /// Neither (hold).
    Inactive,
}

impl Direction {
    /// The direction the other side must take (sendonly ↔ recvonly).
    pub const fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether this side sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The SDP attribute name.
    pub const fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.attribute()))
    }

    /// This direction without the receiving half (what `c=0.0.0.0` means for its writer).
    const fn without_receiving(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

/// What the shell needs to run the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// Where to send RTP; `None` when the peer gave no usable address or is on hold
    /// (`c=0.0.0.0`). The shell may then learn it from the first packet it receives.
    pub remote: Option<SocketAddr>,
    /// The G.711 law we send.
    pub codec: Codec,
    /// The payload type we send it with (the peer's number for it).
    pub payload_type: PayloadType,
    /// The payload type of RFC 4733 telephone-events, if both sides have them.
    pub dtmf_payload_type: Option<PayloadType>,
    /// Packet time we send with (what the peer asked to receive).
    pub ptime: Duration,
    /// Our direction: whether we may send and expect to receive.
    pub direction: Direction,
}

impl NegotiatedAudio {
    /// Samples of 8 kHz audio in one packet.
    pub fn samples_per_packet(&self) -> usize {
        usize::try_from(self.ptime.as_millis() * 8).unwrap_or(160)
    }

    /// The session of our default audio line — PCMA (the law we offer first), telephone-event
    /// 101, 20 ms, sendrecv — with no remote yet. What a leg runs when no SDP could be
    /// understood, or before any arrived: an emergency call gets G.711 audio all the same.
    pub fn fallback() -> NegotiatedAudio {
        let line = default_audio_line(None);
        NegotiatedAudio {
            remote: None,
            codec: Codec::Pcma,
            payload_type: Codec::Pcma.static_payload_type(),
            dtmf_payload_type: line.telephone_event,
            ptime: line.ptime,
            direction: line.direction,
        }
    }
}

/// Something about an offer that we worked around rather than refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpWarning {
    /// `rtc-sdp` rejected the offer; it was read by the lenient scanner instead.
    #[error("offer is not strictly valid SDP ({0}); read it leniently")]
    ReadLeniently(String),
    /// Nothing usable could be read; answered with our defaults and no remote address.
    #[error("offer is unreadable ({0}); answered PCMA/PCMU/telephone-event by default")]
    Unreadable(String),
    /// The offer has no audio stream we can take; every stream is rejected.
    #[error("offer has no audio stream")]
    NoAudioStream,
    /// The offerer disabled its audio stream (port 0).
    #[error("offerer disabled the audio stream (port 0)")]
    AudioDisabled,
    /// The audio stream is not plain RTP (e.g. SRTP); answered as RTP/AVP anyway.
    #[error("audio transport `{0}` is not supported; answered RTP/AVP")]
    UnsupportedTransport(String),
    /// Neither PCMA nor PCMU was offered; answered both anyway.
    #[error("no G.711 among offered formats [{0}]; answered PCMA/PCMU anyway")]
    NoG711(String),
    /// `a=ptime` was unreadable or outside 10–60 ms; 20 ms is used.
    #[error("ptime `{0}` unusable; using 20 ms")]
    UnusablePtime(String),
    /// The connection address is not an IP address (a host name, or garbage).
    #[error("connection address `{0}` unusable; remote address unknown")]
    UnusableAddress(String),
    /// No `c=` line applies to the audio stream.
    #[error("no connection address for the audio stream; remote address unknown")]
    NoConnectionAddress,
}

/// Why an answer to our offer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    /// Not SDP at all.
    #[error("answer is unreadable: {0}")]
    Unreadable(String),
    /// No `m=audio` line.
    #[error("answer has no audio stream")]
    NoAudioStream,
    /// The answerer rejected our audio stream (port 0).
    #[error("answerer rejected the audio stream (port 0)")]
    AudioRejected,
    /// The answer chose no G.711 format.
    #[error("answer chose no G.711 format (formats [{0}])")]
    NoCommonCodec(String),
    /// The connection address is not an IP address (or is missing).
    #[error("connection address `{0}` unusable")]
    UnusableAddress(String),
}

/// Our answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP body to send.
    pub sdp: String,
    /// The negotiated stream.
    pub audio: NegotiatedAudio,
    /// What was worked around, for the call log.
    pub warnings: Vec<SdpWarning>,
    local: LocalAudio,
    media: Vec<MediaLine>,
}

impl Answer {
    /// Our session parameters as written in `sdp`.
    pub fn local(&self) -> &LocalAudio {
        &self.local
    }

    /// Increments the session version and renders the same session again, for a re-INVITE
    /// or UPDATE that we answer (or offer) with our current session.
    pub fn rerender_with_next_version(&mut self) -> &str {
        self.local = self.local.next_version();
        self.sdp = render(&self.local, &self.media);
        &self.sdp
    }
}

/// One `m=` line of an SDP we write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaLine {
    /// Our audio stream.
    Audio(AudioLine),
    /// A stream we reject: mirrored with port 0 (RFC 3264 §6).
    Rejected {
        media: String,
        proto: String,
        format: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AudioLine {
    proto: &'static str,
    codecs: Vec<(Codec, PayloadType)>,
    telephone_event: Option<PayloadType>,
    ptime: Duration,
    direction: Direction,
}

/// An SDP offer for a call where we offer first (INVITE without SDP, outbound agency legs):
/// PCMA, PCMU, telephone-event 101, 20 ms, sendrecv.
pub fn offer(local: &LocalAudio) -> String {
    render(local, &[MediaLine::Audio(default_audio_line(None))])
}

fn default_audio_line(telephone_event: Option<PayloadType>) -> AudioLine {
    AudioLine {
        proto: "RTP/AVP",
        codecs: vec![
            (Codec::Pcma, Codec::Pcma.static_payload_type()),
            (Codec::Pcmu, Codec::Pcmu.static_payload_type()),
        ],
        telephone_event: Some(telephone_event.unwrap_or(OUR_TELEPHONE_EVENT_PT)),
        ptime: DEFAULT_PTIME,
        direction: Direction::SendRecv,
    }
}

/// Answers an offer. Never fails; see the module documentation.
pub fn answer(offer: &[u8], local: &LocalAudio) -> Answer {
    let mut warnings = Vec::new();
    let session = match read_session(offer) {
        Ok((session, lenient)) => {
            warnings.extend(lenient.map(SdpWarning::ReadLeniently));
            session
        }
        Err(reason) => return default_answer(local, SdpWarning::Unreadable(reason)),
    };
    if session.media.is_empty() {
        return default_answer(local, SdpWarning::Unreadable("no m= line".to_owned()));
    }

    let chosen = choose_audio(&session.media);
    let mut lines: Vec<MediaLine> = session.media.iter().map(MediaLine::rejecting).collect();
    let Some(index) = chosen else {
        let disabled = session.media.iter().any(|m| m.is_audio());
        warnings.push(if disabled {
            SdpWarning::AudioDisabled
        } else {
            SdpWarning::NoAudioStream
        });
        let audio = NegotiatedAudio {
            remote: None,
            codec: Codec::Pcma,
            payload_type: Codec::Pcma.static_payload_type(),
            dtmf_payload_type: None,
            ptime: DEFAULT_PTIME,
            direction: Direction::Inactive,
        };
        return Answer {
            sdp: render(local, &lines),
            audio,
            warnings,
            local: *local,
            media: lines,
        };
    };
    let Some(offered) = session.media.get(index) else {
        return default_answer(local, SdpWarning::NoAudioStream);
    };

    let proto = match offered.proto.to_ascii_uppercase().as_str() {
        "RTP/AVP" => "RTP/AVP",
        "RTP/AVPF" => "RTP/AVPF",
        _ => {
            warnings.push(SdpWarning::UnsupportedTransport(offered.proto.clone()));
            "RTP/AVP"
        }
    };
    let formats = offered.resolve_formats();
    let telephone_event = formats.iter().find_map(|f| match f {
        Format::TelephoneEvent(pt) => Some(*pt),
        _ => None,
    });
    let g711 = formats.iter().find_map(|f| match f {
        Format::G711(codec, pt) => Some((*codec, *pt)),
        _ => None,
    });
    let mut line = match g711 {
        Some((codec, pt)) => AudioLine {
            proto,
            codecs: vec![(codec, pt)],
            telephone_event,
            ptime: DEFAULT_PTIME,
            direction: Direction::SendRecv,
        },
        None => {
            warnings.push(SdpWarning::NoG711(offered.formats.join(" ")));
            AudioLine {
                proto,
                ..default_audio_line(telephone_event)
            }
        }
    };
    line.ptime = match offered.ptime.as_deref().or(session.ptime.as_deref()) {
        None => DEFAULT_PTIME,
        Some(text) => parse_ptime(text).unwrap_or_else(|| {
            warnings.push(SdpWarning::UnusablePtime(text.to_owned()));
            DEFAULT_PTIME
        }),
    };

    let (remote, on_hold) = match offered
        .connection
        .as_deref()
        .or(session.connection.as_deref())
    {
        None => {
            warnings.push(SdpWarning::NoConnectionAddress);
            (None, false)
        }
        Some(text) => match parse_connection_address(text) {
            Some(ip) if ip.is_unspecified() => (None, true),
            Some(ip) => (Some(SocketAddr::new(ip, offered.port)), false),
            None => {
                warnings.push(SdpWarning::UnusableAddress(text.to_owned()));
                (None, false)
            }
        },
    };
    let mut offered_direction = offered
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    if on_hold {
        // RFC 3264 §8.4: c=0.0.0.0 means "do not send to me".
        offered_direction = offered_direction.without_receiving();
    }
    line.direction = offered_direction.reversed();

    let (codec, payload_type) = line
        .codecs
        .first()
        .copied()
        .unwrap_or((Codec::Pcma, Codec::Pcma.static_payload_type()));
    let audio = NegotiatedAudio {
        remote,
        codec,
        payload_type,
        dtmf_payload_type: line.telephone_event,
        ptime: line.ptime,
        direction: line.direction,
    };
    if let Some(slot) = lines.get_mut(index) {
        *slot = MediaLine::Audio(line);
    }
    Answer {
        sdp: render(local, &lines),
        audio,
        warnings,
        local: *local,
        media: lines,
    }
}

fn default_answer(local: &LocalAudio, why: SdpWarning) -> Answer {
    let audio = NegotiatedAudio::fallback();
    let media = vec![MediaLine::Audio(default_audio_line(None))];
    Answer {
        sdp: render(local, &media),
        audio,
        warnings: vec![why],
        local: *local,
        media,
    }
}

/// Reads the answer to one of our offers.
pub fn accept_answer(answer: &[u8]) -> Result<NegotiatedAudio, SdpError> {
    let (session, lenient) = read_session(answer).map_err(SdpError::Unreadable)?;
    if let Some(reason) = lenient {
        tracing::debug!(%reason, "SDP answer read leniently");
    }
    let audio = session
        .media
        .iter()
        .find(|m| m.is_audio())
        .ok_or(SdpError::NoAudioStream)?;
    if audio.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    let formats = audio.resolve_formats();
    let (codec, payload_type) = formats
        .iter()
        .find_map(|f| match f {
            Format::G711(codec, pt) => Some((*codec, *pt)),
            _ => None,
        })
        .ok_or_else(|| SdpError::NoCommonCodec(audio.formats.join(" ")))?;
    let dtmf_payload_type = formats.iter().find_map(|f| match f {
        Format::TelephoneEvent(pt) => Some(*pt),
        _ => None,
    });
    let ptime = audio
        .ptime
        .as_deref()
        .or(session.ptime.as_deref())
        .and_then(parse_ptime)
        .unwrap_or(DEFAULT_PTIME);
    let address_text = audio
        .connection
        .as_deref()
        .or(session.connection.as_deref())
        .unwrap_or_default();
    let ip = parse_connection_address(address_text)
        .ok_or_else(|| SdpError::UnusableAddress(address_text.to_owned()))?;
    let mut their_direction = audio
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    if ip.is_unspecified() {
        their_direction = their_direction.without_receiving();
    }
    Ok(NegotiatedAudio {
        remote: (!ip.is_unspecified()).then(|| SocketAddr::new(ip, audio.port)),
        codec,
        payload_type,
        dtmf_payload_type,
        ptime,
        direction: their_direction.reversed(),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The facts we need from an SDP, whichever parser read it.
#[derive(Debug, Default)]
struct SessionFacts {
    connection: Option<String>,
    direction: Option<Direction>,
    ptime: Option<String>,
    media: Vec<MediaFacts>,
}

#[derive(Debug, Default)]
struct MediaFacts {
    media: String,
    port: u16,
    proto: String,
    formats: Vec<String>,
    connection: Option<String>,
    direction: Option<Direction>,
    ptime: Option<String>,
    /// `a=rtpmap` values, e.g. `101 telephone-event/8000`.
    rtpmaps: Vec<String>,
}

/// A payload format as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    G711(Codec, PayloadType),
    TelephoneEvent(PayloadType),
    Other,
}

impl MediaFacts {
    fn is_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
    }

    /// The formats of the `m=` line in the offerer's order of preference.
    fn resolve_formats(&self) -> Vec<Format> {
        self.formats
            .iter()
            .map(|format| {
                let Ok(pt) = format.parse::<u8>() else {
                    return Format::Other;
                };
                let payload_type = PayloadType(pt);
                let mapped = self.rtpmaps.iter().find_map(|map| {
                    let (number, encoding) = map.trim().split_once(char::is_whitespace)?;
                    (number.parse::<u8>().ok()? == pt).then_some(encoding.trim())
                });
                match mapped {
                    Some(encoding) => classify_encoding(encoding, payload_type),
                    None => match pt {
                        0 => Format::G711(Codec::Pcmu, payload_type),
                        8 => Format::G711(Codec::Pcma, payload_type),
                        _ => Format::Other,
                    },
                }
            })
            .collect()
    }
}

/// Classifies an rtpmap encoding such as `PCMA/8000` or `telephone-event/8000`.
fn classify_encoding(encoding: &str, payload_type: PayloadType) -> Format {
    let mut parts = encoding.split('/');
    let name = parts.next().unwrap_or_default();
    let rate = parts.next().map(str::trim);
    let channels = parts.next().map(str::trim);
    if rate != Some("8000") || !matches!(channels, None | Some("1")) {
        return Format::Other;
    }
    if name.eq_ignore_ascii_case("PCMA") {
        Format::G711(Codec::Pcma, payload_type)
    } else if name.eq_ignore_ascii_case("PCMU") {
        Format::G711(Codec::Pcmu, payload_type)
    } else if name.eq_ignore_ascii_case("telephone-event") {
        Format::TelephoneEvent(payload_type)
    } else {
        Format::Other
    }
}

/// Reads with `rtc-sdp`, falling back to the lenient scanner. Returns the facts and, when
/// the fallback was needed, why `rtc-sdp` refused.
fn read_session(bytes: &[u8]) -> Result<(SessionFacts, Option<String>), String> {
    match rtc_sdp::SessionDescription::unmarshal(&mut Cursor::new(bytes)) {
        Ok(description) => Ok((facts_from_rtc_sdp(&description), None)),
        Err(strict_error) => {
            let facts = scan_leniently(bytes)?;
            Ok((facts, Some(strict_error.to_string())))
        }
    }
}

fn facts_from_rtc_sdp(description: &rtc_sdp::SessionDescription) -> SessionFacts {
    let mut facts = SessionFacts {
        connection: description
            .connection_information
            .as_ref()
            .and_then(|c| c.address.as_ref())
            .map(|a| a.address.clone()),
        ..SessionFacts::default()
    };
    for attribute in &description.attributes {
        facts.note_attribute(&attribute.key, attribute.value.as_deref());
    }
    for media in &description.media_descriptions {
        let mut m = MediaFacts {
            media: media.media_name.media.clone(),
            port: u16::try_from(media.media_name.port.value).unwrap_or(0),
            proto: media.media_name.protos.join("/"),
            formats: media.media_name.formats.clone(),
            connection: media
                .connection_information
                .as_ref()
                .and_then(|c| c.address.as_ref())
                .map(|a| a.address.clone()),
            ..MediaFacts::default()
        };
        for attribute in &media.attributes {
            m.note_attribute(&attribute.key, attribute.value.as_deref());
        }
        facts.media.push(m);
    }
    facts
}

impl SessionFacts {
    fn note_attribute(&mut self, key: &str, value: Option<&str>) {
        if let Some(direction) = Direction::from_attribute(key) {
            self.direction = Some(direction);
        } else if key.eq_ignore_ascii_case("ptime") {
            self.ptime = value.map(str::to_owned);
        }
    }
}

impl MediaFacts {
    fn note_attribute(&mut self, key: &str, value: Option<&str>) {
        if let Some(direction) = Direction::from_attribute(key) {
            self.direction = Some(direction);
        } else if key.eq_ignore_ascii_case("ptime") {
            self.ptime = value.map(str::to_owned);
        } else if key.eq_ignore_ascii_case("rtpmap")
            && let Some(value) = value
        {
            self.rtpmaps.push(value.to_owned());
        }
    }
}

/// Reads `c=`, `m=` and `a=` lines in any order, ignoring everything it does not understand.
fn scan_leniently(bytes: &[u8]) -> Result<SessionFacts, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut facts = SessionFacts::default();
    for line in text.lines() {
        let line = line.trim();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match kind.trim() {
            "m" => {
                let mut fields = value.split_whitespace();
                let (Some(media), Some(port), Some(proto)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(format!("malformed media line `m={value}`"));
                };
                let port = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| format!("malformed port in `m={value}`"))?;
                facts.media.push(MediaFacts {
                    media: media.to_owned(),
                    port,
                    proto: proto.to_owned(),
                    formats: fields.map(str::to_owned).collect(),
                    ..MediaFacts::default()
                });
            }
            "c" => {
                let address = value.split_whitespace().nth(2).map(str::to_owned);
                match facts.media.last_mut() {
                    Some(media) => media.connection = address,
                    None => facts.connection = address,
                }
            }
            "a" => {
                let (key, attribute_value) = match value.split_once(':') {
                    Some((key, v)) => (key.trim(), Some(v.trim())),
                    None => (value, None),
                };
                match facts.media.last_mut() {
                    Some(media) => media.note_attribute(key, attribute_value),
                    None => facts.note_attribute(key, attribute_value),
                }
            }
            _ => {}
        }
    }
    if facts.media.is_empty() && facts.connection.is_none() {
        return Err("no SDP lines found".to_owned());
    }
    Ok(facts)
}

/// Index of the audio stream to take: the first active plain-RTP audio stream, else the
/// first active audio stream of any transport.
fn choose_audio(media: &[MediaFacts]) -> Option<usize> {
    let active = |m: &MediaFacts| m.is_audio() && m.port != 0;
    media
        .iter()
        .position(|m| {
            active(m)
                && (m.proto.eq_ignore_ascii_case("RTP/AVP")
                    || m.proto.eq_ignore_ascii_case("RTP/AVPF"))
        })
        .or_else(|| media.iter().position(active))
}

/// `20`, `20.0` or ` 30 ` → a packet time within our limits.
fn parse_ptime(text: &str) -> Option<Duration> {
    let text = text.trim();
    let whole = text.split_once('.').map_or(text, |(whole, _)| whole);
    let ms = whole.parse::<u64>().ok()?;
    let ptime = Duration::from_millis(ms);
    (MIN_PTIME..=MAX_PTIME).contains(&ptime).then_some(ptime)
}

/// The IP of a `c=` address, without a multicast `/ttl` suffix; `None` for host names.
fn parse_connection_address(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Writing

impl MediaLine {
    fn rejecting(offered: &MediaFacts) -> MediaLine {
        MediaLine::Rejected {
            media: offered.media.clone(),
            proto: offered.proto.clone(),
            format: offered
                .formats
                .first()
                .cloned()
                .unwrap_or_else(|| "0".to_owned()),
        }
    }
}

fn address_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn render(local: &LocalAudio, media: &[MediaLine]) -> String {
    let mut sdp = String::with_capacity(320);
    let kind = address_type(local.addr);
    // `write!` into a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\no=siaga {} {} IN {kind} {}\r\ns=siaga\r\nc=IN {kind} {}\r\nt=0 0\r\n",
        local.session_id, local.session_version, local.addr, local.addr
    );
    for line in media {
        match line {
            MediaLine::Rejected {
                media,
                proto,
                format,
            } => {
                let _ = write!(sdp, "m={media} 0 {proto} {format}\r\n");
            }
            MediaLine::Audio(audio) => render_audio(&mut sdp, local.port, audio),
        }
    }
    sdp
}

fn render_audio(sdp: &mut String, port: u16, audio: &AudioLine) {
    let _ = write!(sdp, "m=audio {port} {}", audio.proto);
    for (_, pt) in &audio.codecs {
        let _ = write!(sdp, " {}", pt.0);
    }
    if let Some(pt) = audio.telephone_event {
        let _ = write!(sdp, " {}", pt.0);
    }
    sdp.push_str("\r\n");
    for (codec, pt) in &audio.codecs {
        let _ = write!(sdp, "a=rtpmap:{} {}/8000\r\n", pt.0, codec.encoding_name());
    }
    if let Some(pt) = audio.telephone_event {
        let _ = write!(
            sdp,
            "a=rtpmap:{0} telephone-event/8000\r\na=fmtp:{0} {TELEPHONE_EVENTS}\r\n",
            pt.0
        );
    }
    let _ = write!(
        sdp,
        "a=ptime:{}\r\na={}\r\n",
        audio.ptime.as_millis(),
        audio.direction.attribute()
    );
}

#[cfg(test)]
mod tests;
