//! The B2BUA: from a route decision to an agency on the line, and keeping it there.
//!
//! A route's targets are rung (sequentially or in parallel), each for its ring timeout;
//! failures move to the next target at once, then to the route's fallback, and at a route with
//! a queue the caller waits (hearing announcements) and is retried in arrival order. Every
//! path ends at the centre's call-takers, and the caller is never disconnected by the gateway
//! while waiting. What the agency learns (identity, location, category, emergency IDs) is
//! built here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Method, Request, Response};
use siaga_dialplan::{
    Language, LocationConveyance, PromptName, Route, RouteId, Strategy, Target,
    Transport as PlanTransport, TrustDomain,
};

use crate::call::{CallState, EndReason, LocalSession};
use crate::engine::{
    ClientPurpose, ClientTx, ClientTxEntry, ClientTxKey, Engine, ServerTx, ServerTxEntry, TimerKey,
    reliability,
};
use crate::ids::{Branch, CallId, CallRef, LegId, Tag};
use crate::io::{Direction, Flow, MediaCommand, PlaybackId, Transport};
use crate::sip::build::{self, ALLOW, Body, DialogRequest, ResponseExtras};
use crate::sip::parse::{self, Inbound};
use crate::timeline::CallEventKind;
use crate::transaction::ServerTxKey;
use crate::transaction::client::{ClientInviteTx, ResponseVerdict};
use crate::transaction::server::ServerNonInviteTx;

/// Where agency targets are on the network, resolved by the shell (DNS and the local address
/// towards each target are IO). Keyed by the target URI's `host:port` (port 5060 if absent).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub hops: HashMap<String, Hop>,
    /// Our listening addresses by transport, for targets not in `hops` (REFER to an address
    /// literal): the local address used is the listener's.
    pub listeners: Vec<(Transport, SocketAddr)>,
}

/// One resolved target: where to send, and our address on that path (Via, Contact, SDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    pub remote: SocketAddr,
    pub local_udp: Option<SocketAddr>,
    pub local_tcp: Option<SocketAddr>,
}

impl Directory {
    /// `host:port` key of a SIP URI (IPv6 in brackets), port 5060 by default.
    pub fn key_of(uri: &str) -> Option<String> {
        let rest = uri
            .trim()
            .trim_start_matches('<')
            .split(['>', ';', '?'])
            .next()?;
        let rest = rest
            .strip_prefix("sip:")
            .or_else(|| rest.strip_prefix("sips:"))?;
        let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if hostport.is_empty() {
            return None;
        }
        let has_port = if hostport.starts_with('[') {
            hostport.contains("]:")
        } else {
            hostport.contains(':')
        };
        Some(if has_port {
            hostport.to_ascii_lowercase()
        } else {
            format!("{}:5060", hostport.to_ascii_lowercase())
        })
    }

    /// The flow to send to a target over `transport`, if it can be reached.
    pub fn flow_for(
        &self,
        uri: &str,
        transport: Transport,
        fallback_local: SocketAddr,
    ) -> Option<Flow> {
        let key = Self::key_of(uri)?;
        let (remote, local) = match self.hops.get(&key) {
            Some(hop) => {
                let local = match transport {
                    Transport::Udp => hop.local_udp,
                    Transport::Tcp => hop.local_tcp,
                };
                (hop.remote, local)
            }
            None => {
                // An address literal (a REFER target, a plan written with IPs) needs no DNS.
                let remote: SocketAddr = key.parse().ok()?;
                (remote, None)
            }
        };
        let local = local.unwrap_or_else(|| {
            let listener = self
                .listeners
                .iter()
                .find(|(t, a)| *t == transport && a.is_ipv4() == remote.is_ipv4())
                .map(|(_, a)| *a);
            match listener {
                Some(a) if !a.ip().is_unspecified() => a,
                Some(a) => SocketAddr::new(fallback_local.ip(), a.port()),
                None => fallback_local,
            }
        });
        Some(Flow {
            transport,
            remote,
            local,
            conn: None,
        })
    }
}

/// One outbound INVITE towards an agency target.
#[derive(Debug)]
pub struct AgencyLeg {
    pub n: u32,
    pub target: Target,
    pub flow: Flow,
    pub call_id: CallId,
    pub local_tag: Tag,
    /// Our From (the caller's identity or anonymous) with our tag.
    pub from: String,
    /// To as sent; with the agency's tag once it answers.
    pub to: String,
    pub invite_branch: Branch,
    pub invite_cseq: u32,
    pub next_cseq: u32,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
    pub state: AgencyState,
    pub ring_deadline: Option<Instant>,
    pub session: Option<LocalSession>,
    pub started: Instant,
    /// This leg asked to transfer the caller (REFER): its hang-up does not end the call.
    pub transferring: bool,
    /// This leg is the new target of a transfer started by that leg.
    pub transfer_of: Option<u32>,
    /// The CANCEL for this leg's INVITE has been sent.
    pub cancel_sent: bool,
    /// The agency's re-INVITE we answered 200 and whose ACK we await: (CSeq, transaction).
    pub awaiting_ack: Option<(u32, ServerTxKey)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgencyState {
    /// Waiting for the RTP port.
    Allocating,
    /// INVITE sent, no answer yet.
    Calling,
    /// 1xx received.
    Early,
    /// Given up on (ring timeout, another target answered): CANCEL sent, waiting for the end.
    Cancelling,
    /// 2xx received and ACKed: this is (or was) the agency on the line.
    Answered,
    /// We sent BYE.
    HangingUp,
    Done,
}

impl AgencyState {
    fn pending(self) -> bool {
        matches!(
            self,
            AgencyState::Allocating | AgencyState::Calling | AgencyState::Early
        )
    }
}

/// A second dialog from a forked INVITE, to be released.
struct StrayDialog {
    to: String,
    target: String,
    route_set: Vec<String>,
}

/// A caller waiting for a busy route.
#[derive(Debug, Clone)]
pub struct Queued {
    pub since: Instant,
    pub next_announce: Instant,
    pub give_up_at: Option<Instant>,
}

/// Prompts to the caller while no agency is on the line: connecting prompts, queue
/// announcements, then ringback, looped.
#[derive(Debug, Default)]
pub struct Announcer {
    pub pending: VecDeque<PathBuf>,
    pub playing: Option<(PlaybackId, Instant, bool)>,
    pub ringback: Option<PathBuf>,
}

/// Everything about getting this call to an agency.
#[derive(Debug)]
pub struct Bridging {
    pub route_id: RouteId,
    pub route: Route,
    /// Fallback routes still to try, in order.
    pub chain: VecDeque<RouteId>,
    pub next_target: usize,
    pub legs: BTreeMap<u32, AgencyLeg>,
    pub connected: Option<u32>,
    pub queued: Option<Queued>,
    pub languages: Vec<Language>,
    pub urgent: bool,
    /// How the IVR chose the route (for the agency and the log).
    pub reason: String,
    pub announcer: Announcer,
    pub started: Instant,
}

/// A message body we build: media type and bytes.
type OwnedBody = (String, Vec<u8>);

/// Bridge-owned playbacks use the top bit so they never collide with the IVR's ids.
const BRIDGE_PLAYBACK: u64 = 1 << 63;
/// A ringback that "finishes" faster than this is not a real file: don't loop on it.
const MIN_RINGBACK: Duration = Duration::from_millis(300);
/// How often a failed last resort without a queue is rung again.
const LAST_RESORT_RETRY: Duration = Duration::from_secs(5);
/// How long we wait for the final response after a CANCEL before forgetting the leg.
const CANCEL_GIVE_UP: Duration = Duration::from_secs(32);

/// How long a call whose caller has gone may linger while agency legs are torn down.
pub(crate) const LINGER: Duration = Duration::from_secs(40);

pub(crate) fn is_bridge_playback(id: PlaybackId) -> bool {
    id.0 & BRIDGE_PLAYBACK != 0
}

fn plan_transport(t: PlanTransport) -> Transport {
    match t {
        PlanTransport::Udp => Transport::Udp,
        PlanTransport::Tcp => Transport::Tcp,
    }
}

/// Removes a `;tag=` header parameter from a From/To value.
fn without_tag(value: &str) -> String {
    let (head, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => match value.find(';') {
            Some(i) => value.split_at(i),
            None => (value, ""),
        },
    };
    let kept: Vec<&str> = params
        .split(';')
        .filter(|p| !p.trim().is_empty() && !p.trim().to_ascii_lowercase().starts_with("tag="))
        .collect();
    let mut out = head.to_owned();
    for p in kept {
        out.push(';');
        out.push_str(p.trim());
    }
    out
}

/// The URI inside a name-addr or addr-spec.
pub(crate) fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

impl Engine {
    /// The IVR (or the dialled number) chose a route: ring its targets.
    pub(crate) fn start_route(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        route_id: RouteId,
        reason: String,
        urgent: bool,
        languages: Vec<Language>,
    ) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let plan = call.plan.clone();
        let route = plan.route(&route_id, self.local_time).clone();
        {
            let _entered = call.span.enter();
            tracing::info!(route = %route.id, %reason, urgent, "call routed");
        }
        let chain: VecDeque<RouteId> = plan.fallback_chain(&route.id).into_iter().skip(1).collect();
        let ringback = languages
            .first()
            .map(|l| plan.prompt(&PromptName::new("ringback"), l).path);
        call.bridging = Some(Bridging {
            route_id: route.id.clone(),
            route,
            chain,
            next_target: 0,
            legs: BTreeMap::new(),
            connected: None,
            queued: None,
            languages,
            urgent,
            reason,
            announcer: Announcer {
                ringback,
                ..Announcer::default()
            },
            started: now,
        });
        self.enter_route(now, call_ref);
    }

    /// Announces the current route and rings its first target(s).
    fn enter_route(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let plan = call.plan.clone();
        let Some(b) = call.bridging.as_mut() else {
            return;
        };
        b.next_target = 0;
        let detail = format!(
            "route \"{}\" ({}), {} target(s), {}",
            b.route.id,
            b.route.label,
            b.route.targets.len(),
            b.route.strategy
        );
        if let Some(prompt) = &b.route.connecting_prompt {
            let prompts = plan.prompts(prompt, &b.languages);
            b.announcer
                .pending
                .extend(prompts.into_iter().map(|p| p.path));
        }
        self.timeline(call_ref, CallEventKind::RouteStart, detail);
        self.announce(now, call_ref);
        self.ring_next(now, call_ref);
    }

    /// Places the next leg(s) of the current route.
    fn ring_next(&mut self, now: Instant, call_ref: CallRef) {
        let Some(b) = self.bridging_mut(call_ref) else {
            return;
        };
        let indices: Vec<usize> = match b.route.strategy {
            Strategy::Sequential => (b.next_target < b.route.targets.len())
                .then_some(b.next_target)
                .into_iter()
                .collect(),
            Strategy::Parallel => (b.next_target..b.route.targets.len()).collect(),
        };
        b.next_target += indices.len();
        for i in indices {
            let Some(target) = self
                .bridging(call_ref)
                .and_then(|b| b.route.targets.get(i).cloned())
            else {
                continue;
            };
            self.place_leg(now, call_ref, target, None);
        }
        self.after_leg_change(now, call_ref);
    }

    /// Starts one outbound leg: allocate its RTP port first, the INVITE follows.
    pub(crate) fn place_leg(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        target: Target,
        transfer_of: Option<u32>,
    ) {
        // Leg numbers count per call (B1, B2, … in each call's log).
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let n = call.next_leg;
        call.next_leg += 1;
        let caller_local = call.flow.local;
        let transport = plan_transport(target.transport);
        let Some(flow) = self
            .directory
            .flow_for(target.uri.as_str(), transport, caller_local)
        else {
            self.timeline(
                call_ref,
                CallEventKind::AgencyUnreachable,
                format!("{}: the host cannot be resolved; next target", target.uri),
            );
            return;
        };
        let call_id = CallId(format!("{}-b{n}@siaga", self.rng.token()));
        let local_tag = Tag(self.rng.token());
        let trusted = target.trust == TrustDomain::Inside;
        let private = call.privacy_requested().then_some(()).is_some();
        let from_base = if trusted || !private {
            without_tag(&call.dialog.remote_party)
        } else {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned()
        };
        let leg = AgencyLeg {
            n,
            to: format!("<{}>", target.uri.as_str()),
            from: format!("{from_base};tag={local_tag}"),
            target,
            flow,
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            invite_branch: Branch(format!("z9hG4bK{}", self.rng.token())),
            invite_cseq: 1,
            next_cseq: 2,
            remote_target: None,
            route_set: Vec::new(),
            state: AgencyState::Allocating,
            ring_deadline: None,
            session: None,
            started: now,
            transferring: false,
            transfer_of,
            cancel_sent: false,
            awaiting_ack: None,
        };
        let (local_ip, peer_ip) = (leg.flow.local.ip(), leg.flow.remote.ip());
        self.dialogs
            .insert((call_id, local_tag), (call_ref, LegId::Agency(n)));
        if let Some(b) = self.bridging_mut(call_ref) {
            b.legs.insert(n, leg);
        }
        self.media(MediaCommand::Allocate {
            call: call_ref,
            leg: LegId::Agency(n),
            local_ip,
            peer_ip,
        });
    }

    /// The agency leg's RTP port is ready: send the INVITE.
    pub(crate) fn send_agency_invite(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        n: u32,
        media_local: SocketAddr,
    ) {
        let session_id = self.rng.next() >> 1;
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        let Some(b) = call.bridging.as_ref() else {
            return;
        };
        let Some(leg) = b.legs.get(&n) else { return };
        if leg.state != AgencyState::Allocating {
            return;
        }
        let session = crate::session::offer(media_local, session_id);
        let (mut headers, body) = self.agency_payload(call, b, leg, &session.sdp);
        headers.push(("Allow", ALLOW.to_owned()));
        let contact = crate::call::contact_for(leg.flow);
        let bytes = build::dialog_request(&DialogRequest {
            method: "INVITE",
            request_uri: leg.target.uri.as_str(),
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &leg.invite_branch,
            from: &leg.from,
            to: &leg.to,
            call_id: leg.call_id.as_str(),
            cseq: leg.invite_cseq,
            route_set: &[],
            contact: Some(&contact),
            headers,
            body: Some(Body {
                content_type: &body.0,
                bytes: &body.1,
            }),
        });
        let flow = leg.flow;
        let branch = leg.invite_branch.clone();
        let ring = leg.target.ring_timeout;
        let detail = format!(
            "leg B{n} → {} ({})",
            leg.target.uri,
            flow.transport.as_str()
        );
        let tx = ClientInviteTx::new(now, self.cfg.timers, reliability(flow), bytes.clone());
        let key = ClientTxKey {
            branch,
            method: "INVITE",
        };
        if let Some(leg) = self.bridging_mut(call_ref).and_then(|b| b.legs.get_mut(&n)) {
            leg.state = AgencyState::Calling;
            leg.ring_deadline = Some(now + ring);
            leg.session = Some(session);
        }
        self.timeline(call_ref, CallEventKind::AgencyInvite, detail);
        let entry = ClientTxEntry {
            tx: ClientTx::Invite(tx),
            flow,
            call: call_ref,
            leg: LegId::Agency(n),
            purpose: ClientPurpose::Invite,
        };
        self.start_client_tx(key, entry, bytes);
        self.reschedule_call(call_ref);
    }

    /// The headers and body that tell the agency who and where the caller is.
    fn agency_payload(
        &self,
        call: &crate::call::Call,
        b: &Bridging,
        leg: &AgencyLeg,
        sdp: &str,
    ) -> (Vec<(&'static str, String)>, OwnedBody) {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let trusted = leg.target.trust == TrustDomain::Inside;
        // Identity: inside the trust domain the agency always learns who is calling, even
        // under `Privacy: id` (RFC 3325); outside it, privacy is honoured.
        if trusted {
            let pai = if call.identity.p_asserted_identity.is_empty() {
                vec![format!("<{}>", uri_of(&call.dialog.remote_party))]
            } else {
                call.identity.p_asserted_identity.clone()
            };
            headers.push(("P-Asserted-Identity", pai.join(", ")));
            if let Some(privacy) = &call.identity.privacy {
                headers.push(("Privacy", privacy.clone()));
            }
        }
        headers.push(("Priority", "emergency".to_owned()));
        headers.push((
            "Call-Info",
            format!(
                "<{}>;purpose=emergency-CallId, <{}>;purpose=emergency-IncidentId",
                call.emergency_ids.call_id, call.emergency_ids.incident_id
            ),
        ));
        headers.push(("X-Siaga-Category", b.route_id.to_string()));
        headers.push(("X-Siaga-Dialled", call.invite.uri.to_string()));
        headers.push(("X-Siaga-IVR", b.reason.clone()));
        if b.urgent {
            headers.push(("X-Siaga-Urgent", "silent caller".to_owned()));
        }
        if let Some(of) = leg.transfer_of {
            headers.push(("X-Siaga-Transferred-From", format!("leg B{of}")));
        }
        // Location, as the target is configured to take it.
        let report = call.location.as_ref();
        let geolocation: Vec<String> = call
            .invite
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case("Geolocation"))
            .map(|h| h.value().to_owned())
            .collect();
        let routing = call
            .invite
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("Geolocation-Routing"))
            .map(|h| h.value().to_owned());
        let mut body = (String::from("application/sdp"), sdp.as_bytes().to_vec());
        match leg.target.location {
            LocationConveyance::Withheld => {}
            LocationConveyance::Reference => {
                let refs: Vec<String> = geolocation
                    .iter()
                    .flat_map(|g| {
                        parse::split_header_list(g)
                            .into_iter()
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .filter(|v| !v.to_ascii_lowercase().contains("<cid:"))
                    .collect();
                if !refs.is_empty() {
                    headers.push(("Geolocation", refs.join(", ")));
                }
            }
            LocationConveyance::Value => {
                let mut parts: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
                let mut geo_values = geolocation.clone();
                if let Some(report) = report {
                    for doc in &report.pidf_documents {
                        parts.push((
                            doc.content_type
                                .clone()
                                .unwrap_or_else(|| "application/pidf+xml".to_owned()),
                            doc.content_id.as_ref().map(|c| format!("<{}>", c.as_str())),
                            doc.bytes.clone(),
                        ));
                    }
                    // Nothing by value from the caller, but a derived or default location:
                    // Siaga adds its own PIDF-LO, last, marked as provided by the gateway.
                    if report.pidf_documents.is_empty()
                        && let Some(loc) = report.chosen_location()
                    {
                        let entity = format!(
                            "pres:{}",
                            uri_of(&call.dialog.remote_party)
                                .trim_start_matches("sip:")
                                .trim_start_matches("tel:")
                        );
                        let xml = siaga_location::PidfBuilder::from_location(
                            entity,
                            loc,
                            &call.plan.centre().name,
                        )
                        .render();
                        let cid = format!("siaga-location-{}@siaga", call.call_ref);
                        geo_values.push(format!("<cid:{cid}>"));
                        parts.push((
                            "application/pidf+xml".to_owned(),
                            Some(format!("<{cid}>")),
                            xml.into_bytes(),
                        ));
                    }
                }
                if !parts.is_empty() {
                    let boundary = format!("siaga-{}", self.boundary_token(leg.n));
                    let mut out = Vec::new();
                    let _ = write!(
                        LossyWriter(&mut out),
                        "--{boundary}\r\nContent-Type: application/sdp\r\n\r\n"
                    );
                    out.extend_from_slice(sdp.as_bytes());
                    for (ct, cid, bytes) in parts {
                        let _ = write!(
                            LossyWriter(&mut out),
                            "\r\n--{boundary}\r\nContent-Type: {ct}\r\n"
                        );
                        if let Some(cid) = cid {
                            let _ = write!(LossyWriter(&mut out), "Content-ID: {cid}\r\n");
                        }
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&bytes);
                    }
                    let _ = write!(LossyWriter(&mut out), "\r\n--{boundary}--\r\n");
                    body = (format!("multipart/mixed;boundary={boundary}"), out);
                }
                if !geo_values.is_empty() {
                    headers.push(("Geolocation", geo_values.join(", ")));
                    if let Some(r) = routing {
                        headers.push(("Geolocation-Routing", r));
                    }
                }
            }
        }
        (headers, body)
    }

    fn boundary_token(&self, n: u32) -> String {
        format!("{:x}{n}", self.next_call_ref)
    }

    /// Plays what is queued for the caller while no agency is on the line.
    pub(crate) fn announce(&mut self, now: Instant, call_ref: CallRef) {
        let mut play = None;
        let id = PlaybackId(BRIDGE_PLAYBACK | (self.next_playback + 1));
        if let Some(b) = self.bridging_mut(call_ref) {
            if b.connected.is_some() || b.announcer.playing.is_some() {
                return;
            }
            let (next, is_ringback) = match b.announcer.pending.pop_front() {
                Some(p) => (Some(p), false),
                None => (b.announcer.ringback.clone(), true),
            };
            if let Some(path) = next {
                b.announcer.playing = Some((id, now, is_ringback));
                play = Some((id, path));
            }
        }
        if play.is_some() {
            self.next_playback += 1;
        }
        if let Some((playback, prompt)) = play {
            self.media(MediaCommand::Play {
                call: call_ref,
                leg: LegId::Caller,
                playback,
                prompt,
            });
        }
    }

    /// A bridge announcement ended: play the next one (or ringback again).
    pub(crate) fn announcement_finished(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        id: PlaybackId,
    ) {
        let Some(b) = self.bridging_mut(call_ref) else {
            return;
        };
        match b.announcer.playing {
            Some((playing, started, ringback)) if playing == id => {
                b.announcer.playing = None;
                if ringback && now.duration_since(started) < MIN_RINGBACK {
                    // No usable ringback file: silence rather than a busy loop.
                    b.announcer.ringback = None;
                }
            }
            _ => return,
        }
        self.announce(now, call_ref);
    }

    fn stop_announcements(&mut self, call_ref: CallRef) {
        let Some(b) = self.bridging_mut(call_ref) else {
            return;
        };
        b.announcer.pending.clear();
        if let Some((playback, _, _)) = b.announcer.playing.take() {
            self.media(MediaCommand::StopPlayback {
                call: call_ref,
                leg: LegId::Caller,
                playback,
            });
        }
    }

    /// A response to one of the agency-leg transactions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_response(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        n: u32,
        purpose: ClientPurpose,
        msg: &Inbound,
        resp: &Response,
        verdict: ResponseVerdict,
    ) {
        let status = resp.status_code.code();
        match purpose {
            ClientPurpose::Invite => {}
            ClientPurpose::Bye
            | ClientPurpose::Cancel
            | ClientPurpose::Notify
            | ClientPurpose::Probe
            | ClientPurpose::Stray
            | ClientPurpose::Restart => {
                if status >= 200 && purpose == ClientPurpose::Bye {
                    self.leg_done(now, call_ref, n);
                }
                return;
            }
        }
        // 2xx retransmissions reach us too (RFC 6026): each gets an ACK.
        if verdict == ResponseVerdict::Absorb && !(200..300).contains(&status) {
            return;
        }
        let Some(state) = self.leg(call_ref, n).map(|l| l.state) else {
            return;
        };
        match status {
            100..=199 => {
                if status == 100 {
                    return;
                }
                let early_sdp = crate::engine::sdp_of_response(resp);
                if let Some(leg) = self.leg_mut(call_ref, n) {
                    leg.to = header_value_resp(resp, |h| matches!(h, Header::To(_)))
                        .unwrap_or_else(|| leg.to.clone());
                    if leg.state == AgencyState::Calling {
                        leg.state = AgencyState::Early;
                    }
                }
                if state == AgencyState::Calling {
                    self.timeline(
                        call_ref,
                        CallEventKind::AgencyRinging,
                        format!("leg B{n}: {status}"),
                    );
                }
                if state == AgencyState::Cancelling {
                    // Given up on before any provisional: the CANCEL may go now.
                    self.send_cancel(call_ref, n);
                    return;
                }
                // Early media (183 with SDP): the caller hears the agency's announcement.
                if let Some(sdp) = early_sdp
                    && let Some(remote) = crate::session::remote_of(sdp)
                    && self.connected_leg(call_ref).is_none()
                {
                    self.media(MediaCommand::Start {
                        call: call_ref,
                        leg: LegId::Agency(n),
                        session: remote,
                    });
                    self.stop_announcements(call_ref);
                    self.media(MediaCommand::Bridge {
                        call: call_ref,
                        agency: LegId::Agency(n),
                    });
                    self.timeline(
                        call_ref,
                        CallEventKind::AgencyEarlyMedia,
                        format!("leg B{n}"),
                    );
                }
            }
            200..=299 => self.on_agency_answer(now, call_ref, n, msg, resp),
            _ => {
                if let Some(leg) = self.leg_mut(call_ref, n) {
                    leg.state = AgencyState::Done;
                }
                let outcome = format!("leg B{n}: {status} {}", parse::reason_phrase(status));
                if state == AgencyState::Cancelling {
                    self.timeline(call_ref, CallEventKind::AgencyCancelled, outcome);
                    self.leg_done(now, call_ref, n);
                } else {
                    self.timeline(call_ref, CallEventKind::AgencyFailed, outcome);
                    self.leg_failed(now, call_ref, n);
                }
            }
        }
    }

    fn on_agency_answer(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        n: u32,
        msg: &Inbound,
        resp: &Response,
    ) {
        let contact = header_value_resp(resp, |h| matches!(h, Header::Contact(_)))
            .and_then(|c| parse::split_header_list(&c).first().map(|v| uri_of(v)));
        let mut route_set = parse::record_routes(&resp.headers);
        route_set.reverse();
        let to = header_value_resp(resp, |h| matches!(h, Header::To(_)));
        let Some(leg) = self.leg_mut(call_ref, n) else {
            return;
        };
        let first_answer = matches!(
            leg.state,
            AgencyState::Calling | AgencyState::Early | AgencyState::Cancelling
        );
        let tag = |v: &str| {
            v.split(";tag=")
                .nth(1)
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        };
        let forked = !first_answer
            && to
                .as_deref()
                .and_then(tag)
                .is_some_and(|t| Some(t) != tag(&leg.to));
        if forked {
            // A second desk behind a forking proxy answered too (RFC 3261 §13.2.2.4): that
            // dialog is ACKed and hung up at once, on its own tag, target and route.
            let stray = StrayDialog {
                to: to.unwrap_or_default(),
                target: contact.unwrap_or_else(|| leg.target.uri.as_str().to_owned()),
                route_set,
            };
            return self.release_stray(call_ref, n, stray);
        }
        if first_answer {
            if let Some(to) = to {
                leg.to = to;
            }
            leg.remote_target = contact.or_else(|| Some(leg.target.uri.as_str().to_owned()));
            leg.route_set = route_set;
        }
        let _ = msg;
        // ACK every 2xx (retransmissions included), on the dialog's own path.
        self.send_agency_request(call_ref, n, "ACK", Vec::new(), None, false);
        if !first_answer {
            return;
        }
        let was_cancelling =
            self.leg(call_ref, n).map(|l| l.state) == Some(AgencyState::Cancelling);
        let taken = self.connected_leg(call_ref).is_some_and(|c| c != n);
        let transfer_of = self.leg(call_ref, n).and_then(|l| l.transfer_of);
        if was_cancelling || (taken && transfer_of.is_none()) {
            // Too late: someone else has the caller. Hang this one up politely.
            if let Some(leg) = self.leg_mut(call_ref, n) {
                leg.state = AgencyState::Answered;
            }
            self.timeline(
                call_ref,
                CallEventKind::AgencyLateAnswer,
                format!("leg B{n} answered after another; hanging it up"),
            );
            self.bye_leg(now, call_ref, n);
            return;
        }
        let answer_sdp = crate::engine::sdp_of_response(resp).and_then(crate::session::remote_of);
        let waited = self
            .bridging(call_ref)
            .map(|b| now.duration_since(b.started));
        let uri = match self.leg_mut(call_ref, n) {
            Some(leg) => {
                leg.state = AgencyState::Answered;
                leg.ring_deadline = None;
                leg.target.uri.as_str().to_owned()
            }
            None => return,
        };
        if let Some(remote) = answer_sdp {
            self.media(MediaCommand::Start {
                call: call_ref,
                leg: LegId::Agency(n),
                session: remote,
            });
        } else {
            self.timeline(
                call_ref,
                CallEventKind::SdpWarning,
                format!("leg B{n} answered without SDP"),
            );
        }
        self.stop_announcements(call_ref);
        self.media(MediaCommand::Bridge {
            call: call_ref,
            agency: LegId::Agency(n),
        });
        *self.target_load.entry(uri.clone()).or_default() += 1;
        let previous = self.bridging_mut(call_ref).and_then(|b| {
            let previous = b.connected.replace(n);
            b.queued = None;
            previous
        });
        self.leave_queue(now, call_ref);
        self.timeline(
            call_ref,
            CallEventKind::AgencyAnswered,
            format!(
                "leg B{n} {uri} answered after {} ms; caller bridged",
                waited.map_or(0, |w| w.as_millis())
            ),
        );
        // Any other attempt still ringing is cancelled.
        let others: Vec<u32> = self
            .bridging(call_ref)
            .map(|b| {
                b.legs
                    .values()
                    .filter(|l| l.n != n && l.state.pending())
                    .map(|l| l.n)
                    .collect()
            })
            .unwrap_or_default();
        for other in others {
            self.cancel_leg(now, call_ref, other);
        }
        // A completed transfer: tell the transferor, then release it.
        if let Some(from) = transfer_of.or(previous.filter(|p| *p != n)) {
            self.notify_transfer(call_ref, from, "SIP/2.0 200 OK", true);
            if self
                .leg(call_ref, from)
                .is_some_and(|l| l.state == AgencyState::Answered)
            {
                self.bye_leg(now, call_ref, from);
            }
            self.timeline(
                call_ref,
                CallEventKind::TransferDone,
                format!("caller moved from leg B{from} to leg B{n}"),
            );
        }
        self.reschedule_call(call_ref);
    }

    /// ACK and BYE for an extra dialog created by a forked INVITE.
    fn release_stray(&mut self, call_ref: CallRef, n: u32, stray: StrayDialog) {
        let Some(leg) = self.leg(call_ref, n) else {
            return;
        };
        let (flow, from, call_id, cseq) = (
            leg.flow,
            leg.from.clone(),
            leg.call_id.clone(),
            leg.invite_cseq,
        );
        let contact = crate::call::contact_for(flow);
        for (method, number) in [("ACK", cseq), ("BYE", cseq + 1)] {
            let branch = Branch(format!("z9hG4bK{}", self.rng.token()));
            let bytes = build::dialog_request(&DialogRequest {
                method,
                request_uri: &stray.target,
                via_transport: flow.transport.as_via(),
                local: flow.local,
                branch: &branch,
                from: &from,
                to: &stray.to,
                call_id: call_id.as_str(),
                cseq: number,
                route_set: &stray.route_set,
                contact: Some(&contact),
                headers: Vec::new(),
                body: None,
            });
            if method == "BYE" {
                let key = ClientTxKey {
                    branch,
                    method: "BYE",
                };
                let leg = LegId::Agency(n);
                self.send_non_invite(key, call_ref, leg, ClientPurpose::Stray, flow, bytes);
            } else {
                self.transmit_leg(Some(call_ref), LegId::Agency(n), flow, bytes);
            }
        }
        self.timeline(
            call_ref,
            CallEventKind::AgencyForkReleased,
            format!("leg B{n}: a second answer ({}) was hung up", stray.to),
        );
    }

    /// Sends an in-dialog request on an agency leg (ACK, BYE, NOTIFY, …). ACK goes without a
    /// transaction; everything else gets a non-INVITE client transaction.
    pub(crate) fn send_agency_request(
        &mut self,
        call_ref: CallRef,
        n: u32,
        method: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Option<(&str, &[u8])>,
        with_tx: bool,
    ) -> Option<Branch> {
        let branch = Branch(format!("z9hG4bK{}", self.rng.token()));
        let leg = self.leg_mut(call_ref, n)?;
        let cseq = if method == "ACK" {
            leg.invite_cseq
        } else {
            let c = leg.next_cseq;
            leg.next_cseq += 1;
            c
        };
        let request_uri = leg
            .remote_target
            .clone()
            .unwrap_or_else(|| leg.target.uri.as_str().to_owned());
        let contact = crate::call::contact_for(leg.flow);
        let bytes = build::dialog_request(&DialogRequest {
            method,
            request_uri: &request_uri,
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &branch,
            from: &leg.from,
            to: &leg.to,
            call_id: leg.call_id.as_str(),
            cseq,
            route_set: &leg.route_set,
            contact: Some(&contact),
            headers,
            body: body.map(|(content_type, bytes)| Body {
                content_type,
                bytes,
            }),
        });
        let flow = leg.flow;
        if with_tx {
            let purpose = match method {
                "BYE" => ClientPurpose::Bye,
                "CANCEL" => ClientPurpose::Cancel,
                _ => ClientPurpose::Notify,
            };
            let key = ClientTxKey {
                branch: branch.clone(),
                method,
            };
            self.send_non_invite(key, call_ref, LegId::Agency(n), purpose, flow, bytes);
        } else {
            self.transmit_leg(Some(call_ref), LegId::Agency(n), flow, bytes);
        }
        Some(branch)
    }

    /// Gives up on a pending leg: CANCEL (RFC 3261 §9.1), or just forget it if the INVITE
    /// has not left yet.
    pub(crate) fn cancel_leg(&mut self, now: Instant, call_ref: CallRef, n: u32) {
        let Some(leg) = self.leg_mut(call_ref, n) else {
            return;
        };
        match leg.state {
            AgencyState::Allocating => {
                leg.state = AgencyState::Done;
                self.media(MediaCommand::Release {
                    call: call_ref,
                    leg: LegId::Agency(n),
                });
            }
            AgencyState::Calling | AgencyState::Early => {
                let provisional_seen = leg.state == AgencyState::Early;
                leg.state = AgencyState::Cancelling;
                // Whatever the agency does, the leg is forgotten after this (a lost 487 must
                // not keep it, or its transactions, forever).
                leg.ring_deadline = Some(now + CANCEL_GIVE_UP);
                // RFC 3261 §9.1: no CANCEL before a provisional response; it goes out when
                // the first one arrives.
                if provisional_seen {
                    self.send_cancel(call_ref, n);
                }
            }
            _ => {}
        }
    }

    /// CANCEL: same Request-URI, Call-ID, From, To (without the agency's tag), CSeq number
    /// and branch as the INVITE.
    fn send_cancel(&mut self, call_ref: CallRef, n: u32) {
        let Some(leg) = self.leg_mut(call_ref, n) else {
            return;
        };
        if leg.cancel_sent {
            return;
        }
        leg.cancel_sent = true;
        let bytes = build::dialog_request(&DialogRequest {
            method: "CANCEL",
            request_uri: leg.target.uri.as_str(),
            via_transport: leg.flow.transport.as_via(),
            local: leg.flow.local,
            branch: &leg.invite_branch,
            from: &leg.from,
            to: &format!("<{}>", leg.target.uri.as_str()),
            call_id: leg.call_id.as_str(),
            cseq: leg.invite_cseq,
            route_set: &[],
            contact: None,
            headers: vec![(
                "Reason",
                "SIP;cause=200;text=\"Call completed elsewhere\"".to_owned(),
            )],
            body: None,
        });
        let flow = leg.flow;
        // A CANCEL shares its INVITE's branch; the CSeq method tells them apart.
        let cancel_key = ClientTxKey {
            branch: leg.invite_branch.clone(),
            method: "CANCEL",
        };
        let leg = LegId::Agency(n);
        self.send_non_invite(
            cancel_key,
            call_ref,
            leg,
            ClientPurpose::Cancel,
            flow,
            bytes,
        );
    }

    /// A cancelled leg whose INVITE never ended: drop its transaction and forget it.
    fn abandon_cancelled(&mut self, now: Instant, call_ref: CallRef, n: u32) {
        if let Some(branch) = self.leg(call_ref, n).map(|l| l.invite_branch.clone()) {
            let key = ClientTxKey {
                branch,
                method: "INVITE",
            };
            self.client_txs.remove(&key);
            self.timers.set(TimerKey::Client(key), None);
        }
        self.timeline(
            call_ref,
            CallEventKind::AgencyCancelTimeout,
            format!("leg B{n}: no final response after CANCEL; forgotten"),
        );
        self.leg_done(now, call_ref, n);
    }

    /// Hangs up an answered leg.
    pub(crate) fn bye_leg(&mut self, now: Instant, call_ref: CallRef, n: u32) {
        let answered = self.leg(call_ref, n).map(|l| l.state) == Some(AgencyState::Answered);
        if !answered {
            return;
        }
        if let Some(leg) = self.leg_mut(call_ref, n) {
            leg.state = AgencyState::HangingUp;
        }
        self.send_agency_request(call_ref, n, "BYE", vec![], None, true);
        self.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::Agency(n),
        });
        self.release_target(call_ref, n, now);
    }

    /// A leg is over (BYE answered, CANCEL finished): forget it.
    pub(crate) fn leg_done(&mut self, now: Instant, call_ref: CallRef, n: u32) {
        let Some(leg) = self.leg_mut(call_ref, n) else {
            return;
        };
        let was_answered = leg.state == AgencyState::Answered;
        leg.state = AgencyState::Done;
        let key = (leg.call_id.clone(), leg.local_tag.clone());
        self.dialogs.remove(&key);
        self.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::Agency(n),
        });
        if was_answered {
            self.release_target(call_ref, n, now);
        }
        if let Some(b) = self.bridging_mut(call_ref) {
            b.legs.remove(&n);
        }
        self.after_leg_change(now, call_ref);
    }

    /// A target we were talking to is free again: the head of its queues may try now.
    fn release_target(&mut self, call_ref: CallRef, n: u32, now: Instant) {
        let Some(uri) = self
            .leg(call_ref, n)
            .map(|l| l.target.uri.as_str().to_owned())
        else {
            return;
        };
        if let Some(count) = self.target_load.get_mut(&uri) {
            *count = count.saturating_sub(1);
        }
        let waiting: Vec<CallRef> = self
            .queues
            .values()
            .filter_map(|q| q.front().copied())
            .filter(|c| *c != call_ref)
            .collect();
        for head in waiting {
            let serves = self
                .calls
                .get(&head)
                .and_then(|c| c.bridging.as_ref())
                .is_some_and(|b| b.route.targets.iter().any(|t| t.uri.as_str() == uri));
            if serves {
                self.retry_from_queue(now, head);
            }
        }
    }

    /// A pending leg failed (error response, Timer B, transport error, ring timeout).
    pub(crate) fn leg_failed(&mut self, now: Instant, call_ref: CallRef, n: u32) {
        let transfer_of = self.leg(call_ref, n).and_then(|l| l.transfer_of);
        let key = self
            .leg(call_ref, n)
            .map(|l| (l.call_id.clone(), l.local_tag.clone()));
        if let Some(key) = key {
            self.dialogs.remove(&key);
        }
        self.media(MediaCommand::Release {
            call: call_ref,
            leg: LegId::Agency(n),
        });
        if let Some(b) = self.bridging_mut(call_ref) {
            b.legs.remove(&n);
        }
        if let Some(from) = transfer_of {
            // The transfer target did not answer: tell the transferor; the caller stays with it
            // if it is still there, otherwise the route continues.
            self.notify_transfer(call_ref, from, "SIP/2.0 503 Service Unavailable", true);
            let still_there = self
                .leg(call_ref, from)
                .is_some_and(|l| l.state == AgencyState::Answered);
            if let Some(leg) = self.leg_mut(call_ref, from) {
                leg.transferring = false;
            }
            self.timeline(
                call_ref,
                CallEventKind::TransferFailed,
                format!("leg B{n} did not answer; caller stays with leg B{from}"),
            );
            if still_there {
                return;
            }
        }
        self.after_leg_change(now, call_ref);
    }

    /// Decides what comes next once a leg changed: another target, the queue, the fallback.
    fn after_leg_change(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        if matches!(call.state, CallState::HangingUp { .. } | CallState::Ended) {
            self.maybe_forget(call_ref);
            return;
        }
        let Some(b) = call.bridging.as_ref() else {
            return;
        };
        if b.connected.is_some_and(|c| b.legs.contains_key(&c)) {
            return;
        }
        let pending = b.legs.values().any(|l| l.state.pending());
        if pending {
            return;
        }
        if let Some(gone) = b.connected {
            // The agency that had the caller left during a transfer that did not complete:
            // the caller must not be left with nobody. Ring the route again (its fallback
            // chain ends at the call-takers).
            if let Some(b) = self.bridging_mut(call_ref) {
                b.connected = None;
                b.next_target = 0;
            }
            self.media(MediaCommand::Unbridge { call: call_ref });
            self.timeline(
                call_ref,
                CallEventKind::AgencyLost,
                format!(
                    "leg B{gone} left and no transfer target answered; ringing the route again"
                ),
            );
            self.announce(now, call_ref);
            self.ring_next(now, call_ref);
            return;
        }
        let more_targets = b.next_target < b.route.targets.len();
        if more_targets {
            self.ring_next(now, call_ref);
            return;
        }
        // Every target of this route failed.
        let has_queue = b.route.queue.is_some();
        let queued = b.queued.clone();
        match (has_queue, queued) {
            (true, None) => self.enter_queue(now, call_ref),
            (true, Some(q)) if q.give_up_at.is_none_or(|t| now < t) => {
                // Still waiting: the next retry comes with the next announcement.
                self.reschedule_call(call_ref);
            }
            _ => self.next_route(now, call_ref),
        }
    }

    /// Moves to the next fallback route (the chain always ends at the call-takers).
    fn next_route(&mut self, now: Instant, call_ref: CallRef) {
        self.leave_queue(now, call_ref);
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return;
        };
        let plan = call.plan.clone();
        let Some(b) = call.bridging.as_mut() else {
            return;
        };
        let from = b.route_id.clone();
        let next = match b.chain.pop_front() {
            Some(next) => next,
            // The last resort has been tried and has no queue: keep trying it, never give up.
            None => plan.last_resort().clone(),
        };
        b.route = plan.route(&next, self.local_time).clone();
        b.route_id = next.clone();
        b.queued = None;
        self.timeline(
            call_ref,
            CallEventKind::Fallback,
            format!("route \"{from}\" exhausted → \"{next}\""),
        );
        let is_same = from == next;
        if is_same {
            // The last resort failed and has no queue of its own: ring it again every 5 s, for
            // as long as the caller stays (a dead network is not hammered; nobody is dropped).
            if let Some(b) = self.bridging_mut(call_ref) {
                b.queued = Some(Queued {
                    since: now,
                    next_announce: now + LAST_RESORT_RETRY,
                    give_up_at: None,
                });
            }
            self.reschedule_call(call_ref);
            return;
        }
        self.enter_route(now, call_ref);
    }

    fn enter_queue(&mut self, now: Instant, call_ref: CallRef) {
        let Some(b) = self.bridging_mut(call_ref) else {
            return;
        };
        let Some(queue) = b.route.queue.clone() else {
            return;
        };
        b.queued = Some(Queued {
            since: now,
            next_announce: now,
            give_up_at: queue.max_wait.map(|w| now + w),
        });
        let route_id = b.route_id.clone();
        let q = self.queues.entry(route_id.clone()).or_default();
        if !q.contains(&call_ref) {
            q.push_back(call_ref);
        }
        let position = q.iter().position(|c| *c == call_ref).map_or(1, |p| p + 1);
        self.timeline(
            call_ref,
            CallEventKind::QueueEnter,
            format!(
                "every target of \"{route_id}\" busy; waiting as number {position} in the queue"
            ),
        );
        self.queue_tick(now, call_ref);
    }

    fn leave_queue(&mut self, now: Instant, call_ref: CallRef) {
        let mut left = None;
        for (route, q) in self.queues.iter_mut() {
            if let Some(i) = q.iter().position(|c| *c == call_ref) {
                q.remove(i);
                left = Some(route.clone());
            }
        }
        if let Some(route) = left {
            let waited = self
                .bridging(call_ref)
                .and_then(|b| b.queued.as_ref())
                .map(|q| now.duration_since(q.since));
            let len = self.queues.get(&route).map_or(0, VecDeque::len);
            self.timeline(
                call_ref,
                CallEventKind::QueueLeave,
                format!(
                    "left the \"{route}\" queue after {} s; {len} still waiting",
                    waited.map_or(0, |w| w.as_secs())
                ),
            );
        }
    }

    /// Queue housekeeping at the call's deadline: announce the position, retry at the head,
    /// give up to the fallback when the maximum wait has passed.
    pub(crate) fn queue_tick(&mut self, now: Instant, call_ref: CallRef) {
        let Some(call) = self.calls.get(&call_ref) else {
            return;
        };
        let plan = call.plan.clone();
        let Some(b) = call.bridging.as_ref() else {
            return;
        };
        let Some(q) = b.queued.clone() else { return };
        if q.give_up_at.is_some_and(|t| now >= t) {
            // The longest wait is over: stop ringing this route and move on at once.
            let pending: Vec<u32> = b
                .legs
                .values()
                .filter(|l| l.state.pending())
                .map(|l| l.n)
                .collect();
            self.timeline(
                call_ref,
                CallEventKind::QueueTimeout,
                format!("waited {} s", now.duration_since(q.since).as_secs()),
            );
            for n in pending {
                self.cancel_leg(now, call_ref, n);
            }
            self.next_route(now, call_ref);
            return;
        }
        if now < q.next_announce {
            return;
        }
        let position = self
            .queues
            .get(&b.route_id)
            .and_then(|q| q.iter().position(|c| *c == call_ref))
            .map_or(1, |p| p + 1) as u32;
        let prompts = plan.queue_announcement(&b.route, position, &b.languages);
        let every = b
            .route
            .queue
            .as_ref()
            .map_or(Duration::from_secs(20), |q| q.announce_every);
        let head = position == 1;
        if let Some(b) = self.bridging_mut(call_ref) {
            if let Some(q) = b.queued.as_mut() {
                q.next_announce = now + every;
            }
            // The announcement replaces the ringback.
            b.announcer
                .pending
                .extend(prompts.into_iter().map(|p| p.path));
        }
        if let Some((playback, _, true)) = self.bridging(call_ref).and_then(|b| b.announcer.playing)
        {
            self.media(MediaCommand::StopPlayback {
                call: call_ref,
                leg: LegId::Caller,
                playback,
            });
            if let Some(b) = self.bridging_mut(call_ref) {
                b.announcer.playing = None;
            }
        }
        self.timeline(
            call_ref,
            CallEventKind::QueueAnnounce,
            format!("position {position}"),
        );
        self.announce(now, call_ref);
        if head {
            self.retry_from_queue(now, call_ref);
        }
        self.reschedule_call(call_ref);
    }

    /// The head of a queue rings the route's targets again.
    fn retry_from_queue(&mut self, now: Instant, call_ref: CallRef) {
        let Some(b) = self.bridging_mut(call_ref) else {
            return;
        };
        if b.connected.is_some() || b.legs.values().any(|l| l.state.pending()) {
            return;
        }
        b.next_target = 0;
        self.timeline(
            call_ref,
            CallEventKind::QueueRetry,
            "ringing the route's targets again",
        );
        self.ring_next(now, call_ref);
    }

    /// Ring timeouts of pending legs, at the call's deadline.
    pub(crate) fn bridge_timers(&mut self, now: Instant, call_ref: CallRef) {
        let stale: Vec<u32> = self
            .bridging(call_ref)
            .map(|b| {
                b.legs
                    .values()
                    .filter(|l| l.state == AgencyState::Cancelling)
                    .filter(|l| l.ring_deadline.is_some_and(|d| now >= d))
                    .map(|l| l.n)
                    .collect()
            })
            .unwrap_or_default();
        for n in stale {
            self.abandon_cancelled(now, call_ref, n);
        }
        let expired: Vec<u32> = self
            .bridging(call_ref)
            .map(|b| {
                b.legs
                    .values()
                    .filter(|l| l.state.pending() && l.ring_deadline.is_some_and(|d| now >= d))
                    .map(|l| l.n)
                    .collect()
            })
            .unwrap_or_default();
        for n in expired {
            let uri = self
                .leg(call_ref, n)
                .map(|l| l.target.uri.to_string())
                .unwrap_or_default();
            self.timeline(
                call_ref,
                CallEventKind::AgencyTimeout,
                format!("leg B{n} {uri}: no answer in time"),
            );
            let transfer_of = self.leg(call_ref, n).and_then(|l| l.transfer_of);
            self.cancel_leg(now, call_ref, n);
            if transfer_of.is_some() {
                // Count it as failed now; the CANCEL finishes in the background.
                if let Some(leg) = self.leg_mut(call_ref, n) {
                    leg.transfer_of = None;
                }
                if let Some(from) = transfer_of {
                    self.notify_transfer(call_ref, from, "SIP/2.0 408 Request Timeout", true);
                    if let Some(l) = self.leg_mut(call_ref, from) {
                        l.transferring = false;
                    }
                }
            }
            self.after_leg_change(now, call_ref);
        }
        self.queue_tick(now, call_ref);
    }

    /// A request from an agency inside its dialog.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_agency_request(
        &mut self,
        now: Instant,
        flow: Flow,
        msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        call_ref: CallRef,
        n: u32,
    ) {
        let connected = self.connected_leg(call_ref) == Some(n);
        match req.method {
            Method::Bye => {
                self.reply_agency(now, flow, &req, key, call_ref, n, 200, vec![], None);
                let transferring = self.leg(call_ref, n).is_some_and(|l| l.transferring);
                let answered = self
                    .leg(call_ref, n)
                    .is_some_and(|l| l.state == AgencyState::Answered);
                if answered {
                    self.release_target(call_ref, n, now);
                }
                if let Some(leg) = self.leg_mut(call_ref, n) {
                    leg.state = AgencyState::Done;
                }
                self.timeline(call_ref, CallEventKind::AgencyHungUp, format!("leg B{n}"));
                if connected && !transferring {
                    // The agency ended the call: the caller is told with a BYE (first, so
                    // the route is not rung again for a caller who is being released).
                    self.hang_up(now, call_ref, EndReason::AgencyHungUp);
                }
                self.leg_done(now, call_ref, n);
            }
            Method::Refer => self.on_refer(now, flow, msg, req, key, call_ref, n),
            Method::Invite | Method::Update => {
                // A re-INVITE: hold is not applied to an emergency call (RFC 6881 ED-66): the
                // caller's leg keeps sending and recording; the direction change is logged.
                let offer = crate::engine::sdp_of(&req).map(<[u8]>::to_vec);
                let mut answer = None;
                if let Some(offer) = &offer
                    && let Some(leg) = self.leg_mut(call_ref, n)
                    && let Some(session) = leg.session.as_ref()
                {
                    let local = SocketAddr::new(leg.flow.local.ip(), sdp_port(&session.sdp));
                    let negotiated = crate::session::answer(offer, local, 1);
                    let direction = negotiated.local.media.direction;
                    answer = Some((
                        negotiated.local.sdp.clone(),
                        negotiated.local.media,
                        direction,
                    ));
                }
                if let Some((_, media, direction)) = &answer {
                    self.media(MediaCommand::Start {
                        call: call_ref,
                        leg: LegId::Agency(n),
                        session: *media,
                    });
                    if *direction != siaga_media::sdp::Direction::SendRecv {
                        self.timeline(
                            call_ref,
                            CallEventKind::AgencyHold,
                            format!("leg B{n} changed direction ({direction:?} for us); the caller is not put on hold"),
                        );
                    }
                }
                let sdp = answer.map(|(sdp, _, _)| sdp);
                self.reply_agency(now, flow, &req, key, call_ref, n, 200, vec![], sdp);
            }
            Method::Info | Method::Notify | Method::Options | Method::Ack => {
                if req.method != Method::Ack {
                    self.reply_agency(now, flow, &req, key, call_ref, n, 200, vec![], None);
                }
            }
            _ => self.reply_agency(now, flow, &req, key, call_ref, n, 405, vec![], None),
        }
        let _ = msg;
    }

    #[allow(clippy::too_many_arguments)]
    fn on_refer(
        &mut self,
        now: Instant,
        flow: Flow,
        _msg: &Inbound,
        req: Request,
        key: ServerTxKey,
        call_ref: CallRef,
        n: u32,
    ) {
        let refer_to = req
            .headers
            .iter()
            .find(|h| matches!(h, Header::ReferTo(_)))
            .map(|h| uri_of(h.value()));
        let Some(refer_to) = refer_to else {
            return self.reply_agency(now, flow, &req, key, call_ref, n, 400, vec![], None);
        };
        let Some(template) = self.leg(call_ref, n).map(|l| l.target.clone()) else {
            return self.reply_agency(now, flow, &req, key, call_ref, n, 481, vec![], None);
        };
        let Ok(uri) = refer_to.parse::<siaga_dialplan::SipUri>() else {
            self.timeline(
                call_ref,
                CallEventKind::TransferRefused,
                format!("leg B{n}: Refer-To {refer_to} is not a SIP URI"),
            );
            return self.reply_agency(now, flow, &req, key, call_ref, n, 400, vec![], None);
        };
        self.reply_agency(now, flow, &req, key, call_ref, n, 202, vec![], None);
        self.notify_transfer(call_ref, n, "SIP/2.0 100 Trying", false);
        if let Some(leg) = self.leg_mut(call_ref, n) {
            leg.transferring = true;
        }
        self.timeline(
            call_ref,
            CallEventKind::TransferRequested,
            format!("leg B{n} transfers the caller to {refer_to}"),
        );
        let target = Target {
            uri,
            ring_timeout: Duration::from_secs(30),
            ..template
        };
        self.place_leg(now, call_ref, target, Some(n));
        let placed = self
            .bridging(call_ref)
            .is_some_and(|b| b.legs.values().any(|l| l.transfer_of == Some(n)));
        if !placed {
            // The transfer target cannot be reached: the transferor keeps the caller.
            self.notify_transfer(call_ref, n, "SIP/2.0 503 Service Unavailable", true);
            if let Some(leg) = self.leg_mut(call_ref, n) {
                leg.transferring = false;
            }
            self.timeline(
                call_ref,
                CallEventKind::TransferFailed,
                format!("{refer_to} cannot be reached; the caller stays with leg B{n}"),
            );
            self.after_leg_change(now, call_ref);
        }
        self.reschedule_call(call_ref);
    }

    /// RFC 3515 NOTIFY with a sipfrag of the transfer's progress.
    fn notify_transfer(&mut self, call_ref: CallRef, n: u32, frag: &str, done: bool) {
        let alive = self
            .leg(call_ref, n)
            .is_some_and(|l| matches!(l.state, AgencyState::Answered));
        if !alive {
            return;
        }
        let state = if done {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let body = format!("{frag}\r\n");
        self.send_agency_request(
            call_ref,
            n,
            "NOTIFY",
            vec![
                ("Event", "refer".to_owned()),
                ("Subscription-State", state.to_owned()),
            ],
            Some(("message/sipfrag;version=2.0", body.as_bytes())),
            true,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_agency(
        &mut self,
        now: Instant,
        flow: Flow,
        req: &Request,
        key: ServerTxKey,
        call_ref: CallRef,
        n: u32,
        status: u16,
        headers: Vec<(&'static str, String)>,
        sdp: Option<String>,
    ) {
        let Some(leg) = self.leg(call_ref, n) else {
            return;
        };
        let contact = crate::call::contact_for(leg.flow);
        let extras = ResponseExtras {
            to_tag: None,
            contact: Some(&contact),
            headers,
            body: sdp.as_ref().map(|s| Body {
                content_type: "application/sdp",
                bytes: s.as_bytes(),
            }),
        };
        let bytes = build::response(req, flow.remote, status, &extras);
        let tx = if req.method == Method::Invite {
            ServerTx::Invite(crate::transaction::server::ServerInviteTx::new(
                self.cfg.timers,
                reliability(flow),
            ))
        } else {
            ServerTx::NonInvite(ServerNonInviteTx::new(self.cfg.timers, reliability(flow)))
        };
        self.server_txs.entry(key.clone()).or_insert(ServerTxEntry {
            repeats: 0,
            tx,
            flow,
            call: Some(call_ref),
            leg: LegId::Agency(n),
            initial_invite: false,
        });
        if req.method == Method::Invite
            && (200..300).contains(&status)
            && let Some(leg) = self.leg_mut(call_ref, n)
        {
            leg.awaiting_ack = Some((cseq_of(req), key.clone()));
        }
        self.respond(now, &key, status, bytes);
    }

    /// Tears down every agency leg of a call that is ending.
    pub(crate) fn release_agency_legs(&mut self, now: Instant, call_ref: CallRef) {
        self.leave_queue(now, call_ref);
        let legs: Vec<(u32, AgencyState)> = self
            .bridging(call_ref)
            .map(|b| b.legs.values().map(|l| (l.n, l.state)).collect())
            .unwrap_or_default();
        for (n, state) in legs {
            match state {
                AgencyState::Answered => self.bye_leg(now, call_ref, n),
                s if s.pending() => self.cancel_leg(now, call_ref, n),
                _ => {}
            }
        }
        self.media(MediaCommand::Unbridge { call: call_ref });
    }

    /// Whether any agency leg still needs the call object.
    pub(crate) fn has_live_legs(&self, call_ref: CallRef) -> bool {
        self.bridging(call_ref)
            .is_some_and(|b| b.legs.values().any(|l| l.state != AgencyState::Done))
    }

    pub(crate) fn bridging(&self, call_ref: CallRef) -> Option<&Bridging> {
        self.calls.get(&call_ref)?.bridging.as_ref()
    }

    pub(crate) fn bridging_mut(&mut self, call_ref: CallRef) -> Option<&mut Bridging> {
        self.calls.get_mut(&call_ref)?.bridging.as_mut()
    }

    pub(crate) fn leg(&self, call_ref: CallRef, n: u32) -> Option<&AgencyLeg> {
        self.calls.get(&call_ref)?.bridging.as_ref()?.legs.get(&n)
    }

    pub(crate) fn leg_mut(&mut self, call_ref: CallRef, n: u32) -> Option<&mut AgencyLeg> {
        self.calls
            .get_mut(&call_ref)?
            .bridging
            .as_mut()?
            .legs
            .get_mut(&n)
    }

    pub(crate) fn connected_leg(&self, call_ref: CallRef) -> Option<u32> {
        self.calls.get(&call_ref)?.bridging.as_ref()?.connected
    }

    /// Client transaction events for an agency leg (Timer B, transport errors).
    pub(crate) fn agency_tx_failed(
        &mut self,
        now: Instant,
        call_ref: CallRef,
        n: u32,
        purpose: ClientPurpose,
        why: &str,
    ) {
        match purpose {
            ClientPurpose::Invite => {
                let state = self.leg(call_ref, n).map(|l| l.state);
                if state.is_some_and(AgencyState::pending) {
                    self.timeline(
                        call_ref,
                        CallEventKind::AgencyFailed,
                        format!("leg B{n}: {why}"),
                    );
                    if let Some(leg) = self.leg_mut(call_ref, n) {
                        leg.state = AgencyState::Done;
                    }
                    self.leg_failed(now, call_ref, n);
                } else if state == Some(AgencyState::Cancelling) {
                    self.leg_done(now, call_ref, n);
                }
            }
            ClientPurpose::Bye => self.leg_done(now, call_ref, n),
            ClientPurpose::Cancel
            | ClientPurpose::Notify
            | ClientPurpose::Probe
            | ClientPurpose::Stray
            | ClientPurpose::Restart => {}
        }
    }

    /// Drops a finished call once its last agency leg is gone.
    pub(crate) fn maybe_forget(&mut self, call_ref: CallRef) {
        let ended = self
            .calls
            .get(&call_ref)
            .is_some_and(|c| matches!(c.state, CallState::Ended));
        if ended && !self.has_live_legs(call_ref) {
            self.calls.remove(&call_ref);
            self.timers.set(TimerKey::Call(call_ref), None);
        }
    }

    /// The agency ACKed our 200 to its re-INVITE: stop repeating it.
    pub(crate) fn agency_ack(&mut self, call_ref: CallRef, n: u32, cseq: u32) {
        let Some(leg) = self.leg_mut(call_ref, n) else {
            return;
        };
        let Some((awaited, key)) = leg.awaiting_ack.clone() else {
            return;
        };
        if awaited != cseq {
            return;
        }
        leg.awaiting_ack = None;
        if let Some(entry) = self.server_txs.get_mut(&key)
            && let ServerTx::Invite(tx) = &mut entry.tx
        {
            tx.on_2xx_acked();
        }
        self.reschedule_server(&key);
    }

    pub(crate) fn log_direction_in(&mut self, call: CallRef, n: u32, flow: Flow, raw: &[u8]) {
        self.log_sip_leg(
            Some(call),
            LegId::Agency(n),
            Direction::In,
            flow,
            raw.to_vec(),
            None,
        );
    }
}

/// The CSeq number of a request (0 if unreadable; our own parser validated it already).
fn cseq_of(req: &Request) -> u32 {
    req.headers
        .iter()
        .find(|h| matches!(h, Header::CSeq(_)))
        .and_then(|h| h.value().split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The earliest bridging deadline of a call: ring timeouts, queue announcements and waits.
pub(crate) fn bridge_deadline(b: &Bridging) -> Option<Instant> {
    let rings = b
        .legs
        .values()
        .filter(|l| l.state.pending() || l.state == AgencyState::Cancelling)
        .filter_map(|l| l.ring_deadline);
    let queue = b
        .queued
        .as_ref()
        .into_iter()
        .flat_map(|q| [Some(q.next_announce), q.give_up_at])
        .flatten();
    rings.chain(queue).min()
}

/// The port of the `m=audio` line of an SDP we wrote.
fn sdp_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9)
}

fn header_value_resp(resp: &Response, pick: impl Fn(&Header) -> bool) -> Option<String> {
    resp.headers
        .iter()
        .find(|h| pick(h))
        .map(|h| h.value().to_owned())
}

/// `fmt::Write` into a byte vector (text parts of a multipart body).
struct LossyWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for LossyWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_keys_default_the_port_and_keep_ipv6_brackets() {
        assert_eq!(
            Directory::key_of("sip:polisi@127.0.0.1").as_deref(),
            Some("127.0.0.1:5060")
        );
        assert_eq!(
            Directory::key_of("<sip:a@[2001:db8::1]:5080;transport=tcp>").as_deref(),
            Some("[2001:db8::1]:5080")
        );
        assert_eq!(
            Directory::key_of("sip:pbx.polri.go.id").as_deref(),
            Some("pbx.polri.go.id:5060")
        );
        assert_eq!(Directory::key_of("tel:110"), None);
    }

    #[test]
    fn tags_are_removed_but_other_params_kept() {
        assert_eq!(
            without_tag("\"A\" <sip:a@b>;tag=1;x=y"),
            "\"A\" <sip:a@b>;x=y"
        );
        assert_eq!(without_tag("sip:a@b;tag=1"), "sip:a@b");
    }
}
