//! After a crash: the dialogs the previous run left up, read back from its call log, and the
//! BYE that ends each one (RFC 3261 §12.2.1.1 and §15.1.1).
//!
//! The call log keeps every SIP message of both legs verbatim, so a dialog can be rebuilt
//! from it alone: for the caller's leg the INVITE (Call-ID, the caller's From and Contact,
//! Record-Route) and our 2xx (our tag); for an agency leg our INVITE (our From and tag) and the
//! agency's 2xx (its tag, Contact, Record-Route). A leg is still up when its INVITE got a 2xx
//! and neither side's BYE completed. [`left_open`] finds those legs; [`OpenDialog::bye`] writes
//! the request; the engine sends it under a client transaction of its own
//! (`Input::ByeAfterRestart`), retransmitted per Timer E
//! until a final response or Timer F, with its outcome on the call's timeline.

use rsipstack::sip::{Header, Headers, Method};

use crate::directory::Directory;
use crate::ids::{Branch, CallId, CallRef, LegId, Tag};
use crate::net::{Direction, Flow};
use crate::sip::build::{self, DialogRequest, contact_for};
use crate::sip::parse::{self, Framing, Inbound, Message};
use crate::sip::read::uri_of;

/// One SIP message of a call as the call log keeps it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedMessage<'a> {
    pub leg: LegId,
    pub direction: Direction,
    /// Transport and addresses as logged (no connection: that died with the process).
    pub flow: Flow,
    pub raw: &'a [u8],
}

/// A dialog of ours that was up when the gateway stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDialog {
    pub call: CallRef,
    pub leg: LegId,
    /// The path the dialog's requests took. The shell may move `local` to a listener it has
    /// now (the port can differ after a restart); the BYE's Via follows it.
    pub flow: Flow,
    /// The peer's Contact (remote target).
    pub request_uri: String,
    /// Our side, with our tag.
    pub from: String,
    /// The peer's side, with its tag.
    pub to: String,
    pub call_id: CallId,
    /// Above every CSeq we used in the dialog.
    pub cseq: u32,
    pub route_set: Vec<String>,
}

/// A leg that was up but whose BYE the log does not allow to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecoverable {
    pub leg: LegId,
    pub why: String,
}

/// The `Reason` our BYEs carry, so the peer (and its logs) know why the call ended.
const REASON: &str = "SIP;cause=200;text=\"gateway_restarted\"";

impl OpenDialog {
    /// The BYE for this dialog, with a fresh `branch`.
    pub fn bye(&self, branch: &Branch) -> Vec<u8> {
        // The logged dialog does not say whether it was sips: the peer reads either.
        let contact = contact_for(self.flow, false);
        build::dialog_request(&DialogRequest {
            method: "BYE",
            request_uri: &self.request_uri,
            via_transport: self.flow.transport.as_via(),
            local: self.flow.local,
            branch,
            from: &self.from,
            to: &self.to,
            call_id: self.call_id.as_str(),
            cseq: self.cseq,
            route_set: &self.route_set,
            contact: Some(&contact),
            headers: vec![("Reason", REASON.to_owned())],
            body: None,
        })
    }
}

/// A logged message that parses, with where it went.
struct Parsed {
    direction: Direction,
    flow: Flow,
    msg: Inbound,
}

impl Parsed {
    fn method(&self) -> Option<&Method> {
        match &self.msg.message {
            Message::Request(r) => Some(&r.method),
            Message::Response(_) => None,
        }
    }

    fn status(&self) -> Option<u16> {
        match &self.msg.message {
            Message::Response(r) => Some(r.status_code.code()),
            Message::Request(_) => None,
        }
    }

    fn headers(&self) -> &Headers {
        match &self.msg.message {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    fn header(&self, pick: impl Fn(&Header) -> bool) -> Option<String> {
        self.headers()
            .iter()
            .find(|h| pick(h))
            .map(|h| h.value().to_owned())
    }

    fn contact_uri(&self) -> Option<String> {
        let contact = self.header(|h| matches!(h, Header::Contact(_)))?;
        parse::split_header_list(&contact)
            .first()
            .map(|v| uri_of(v))
    }

    fn request_uri(&self) -> Option<String> {
        match &self.msg.message {
            Message::Request(r) => Some(r.uri.to_string()),
            Message::Response(_) => None,
        }
    }

    fn is(&self, direction: Direction, method: &Method) -> bool {
        self.direction == direction && self.method() == Some(method)
    }
}

/// The dialogs of `call` that were up when the log ends, one per leg (the caller's and each
/// agency's), from its messages in logged order. Legs that never got a 2xx, or whose dialog a
/// BYE ended, are not listed; an up leg whose BYE cannot be built is an `Err` saying why.
pub fn left_open(
    call: CallRef,
    messages: &[LoggedMessage<'_>],
) -> Vec<Result<OpenDialog, Unrecoverable>> {
    let mut legs: Vec<LegId> = messages.iter().map(|m| m.leg).collect();
    legs.sort_unstable();
    legs.dedup();
    legs.into_iter()
        .filter_map(|leg| {
            let parsed: Vec<Parsed> = messages
                .iter()
                .filter(|m| m.leg == leg)
                .filter_map(|m| {
                    let msg = parse::parse(m.raw, Framing::Datagram).ok()?;
                    Some(Parsed {
                        direction: m.direction,
                        flow: Flow {
                            conn: None,
                            ..m.flow
                        },
                        msg,
                    })
                })
                .collect();
            let dialog = match leg {
                LegId::Caller => caller_dialog(call, &parsed),
                LegId::Agency(_) => agency_dialog(call, leg, &parsed),
            }?;
            Some(dialog.map_err(|why| Unrecoverable { leg, why }))
        })
        .collect()
}

/// The caller's leg: their INVITE came in, our 2xx went out.
fn caller_dialog(call: CallRef, msgs: &[Parsed]) -> Option<Result<OpenDialog, String>> {
    let invite = msgs
        .iter()
        .find(|m| m.is(Direction::In, &Method::Invite) && m.msg.to_tag.is_none())?;
    let ok = msgs.iter().find(|m| {
        m.direction == Direction::Out
            && m.status().is_some_and(|s| (200..300).contains(&s))
            && m.msg.cseq_method == "INVITE"
            && m.msg.cseq == invite.msg.cseq
    })?;
    let ours = ok.msg.to_tag.clone();
    let theirs = invite.msg.from_tag.clone();
    if ended(msgs, &invite.msg.call_id, &ours, &theirs) {
        return None;
    }
    // The latest target refresh from the caller (its INVITE or a re-INVITE/UPDATE) names where
    // it is now.
    let target = msgs
        .iter()
        .rev()
        .filter(|m| m.is(Direction::In, &Method::Invite) || m.is(Direction::In, &Method::Update))
        .find_map(Parsed::contact_uri);
    let Some(from) = ok.header(|h| matches!(h, Header::To(_))) else {
        return Some(Err("our 2xx has no To".into()));
    };
    let Some(to) = invite.header(|h| matches!(h, Header::From(_))) else {
        return Some(Err("the caller's INVITE has no From".into()));
    };
    let request_uri = target.unwrap_or_else(|| uri_of(&to));
    let route_set = parse::record_routes(invite.headers());
    let mut flow = invite.flow;
    if flow.transport.is_stream() {
        // The caller's connection died with the process, and its source port was ephemeral: a
        // new connection goes to the next hop the dialog names (first route, else the
        // target), when that is an address.
        let next_hop = route_set
            .first()
            .map_or(request_uri.as_str(), String::as_str);
        if let Some(addr) = Directory::key_of(&uri_of(next_hop)).and_then(|k| k.parse().ok()) {
            flow.remote = addr;
        }
    }
    Some(Ok(OpenDialog {
        call,
        leg: LegId::Caller,
        flow,
        request_uri,
        from,
        to,
        call_id: invite.msg.call_id.clone(),
        cseq: next_cseq(msgs, 1),
        route_set,
    }))
}

/// An agency leg: our INVITE went out, the agency's 2xx came in.
fn agency_dialog(call: CallRef, leg: LegId, msgs: &[Parsed]) -> Option<Result<OpenDialog, String>> {
    let invite = msgs
        .iter()
        .find(|m| m.is(Direction::Out, &Method::Invite) && m.msg.to_tag.is_none())?;
    // The first answer makes the dialog; a second desk behind a forking proxy was released
    // at once, on its own tag.
    let ok = msgs.iter().find(|m| {
        m.direction == Direction::In
            && m.status().is_some_and(|s| (200..300).contains(&s))
            && m.msg.cseq_method == "INVITE"
            && m.msg.cseq == invite.msg.cseq
            && m.msg.to_tag.is_some()
    })?;
    let ours = invite.msg.from_tag.clone();
    let theirs = ok.msg.to_tag.clone();
    if ended(msgs, &invite.msg.call_id, &ours, &theirs) {
        return None;
    }
    let Some(from) = invite.header(|h| matches!(h, Header::From(_))) else {
        return Some(Err("our INVITE has no From".into()));
    };
    let Some(to) = ok.header(|h| matches!(h, Header::To(_))) else {
        return Some(Err("the agency's 2xx has no To".into()));
    };
    let refreshed = msgs
        .iter()
        .rev()
        .filter(|m| {
            (m.is(Direction::In, &Method::Invite) || m.is(Direction::In, &Method::Update))
                && m.msg.from_tag == theirs
        })
        .find_map(Parsed::contact_uri);
    let Some(request_uri) = refreshed
        .or_else(|| ok.contact_uri())
        .or_else(|| invite.request_uri())
    else {
        return Some(Err("no target for the agency".into()));
    };
    let mut route_set = parse::record_routes(ok.headers());
    route_set.reverse();
    Some(Ok(OpenDialog {
        call,
        leg,
        flow: invite.flow,
        request_uri,
        from,
        to,
        call_id: invite.msg.call_id.clone(),
        cseq: next_cseq(msgs, invite.msg.cseq + 1),
        route_set,
    }))
}

/// Whether the dialog (our tag, their tag) ended: their BYE came in, or ours got a final
/// response. Our BYE without a response (the crash came first) leaves it up.
fn ended(msgs: &[Parsed], call_id: &CallId, ours: &Option<Tag>, theirs: &Option<Tag>) -> bool {
    let in_dialog = |m: &Parsed| &m.msg.call_id == call_id;
    let their_bye = msgs
        .iter()
        .any(|m| in_dialog(m) && m.is(Direction::In, &Method::Bye) && &m.msg.from_tag == theirs);
    let our_byes = msgs.iter().filter(|m| {
        in_dialog(m)
            && m.is(Direction::Out, &Method::Bye)
            && &m.msg.from_tag == ours
            && &m.msg.to_tag == theirs
    });
    let answered = |cseq: u32| {
        msgs.iter().any(|m| {
            in_dialog(m)
                && m.direction == Direction::In
                && m.status().is_some_and(|s| s >= 200)
                && m.msg.cseq_method == "BYE"
                && m.msg.cseq == cseq
        })
    };
    their_bye || our_byes.into_iter().any(|bye| answered(bye.msg.cseq))
}

/// One above every CSeq of our requests on the leg, and at least `floor`.
fn next_cseq(msgs: &[Parsed], floor: u32) -> u32 {
    msgs.iter()
        .filter(|m| m.direction == Direction::Out && m.method().is_some())
        .map(|m| m.msg.cseq.saturating_add(1))
        .fold(floor, u32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Transport;

    const CALLER_INVITE: &str = "INVITE sip:112@192.0.2.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKc1\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        From: \"Caller\" <sip:+6281@198.51.100.7>;tag=caller1\r\n\
        To: <sip:112@192.0.2.1>\r\nCall-ID: a-leg@x\r\nCSeq: 7 INVITE\r\n\
        Contact: <sip:+6281@198.51.100.7:5062>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    const OUR_200: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKc1\r\n\
        From: \"Caller\" <sip:+6281@198.51.100.7>;tag=caller1\r\n\
        To: <sip:112@192.0.2.1>;tag=gw1\r\nCall-ID: a-leg@x\r\nCSeq: 7 INVITE\r\n\
        Contact: <sip:siaga@192.0.2.1:5060>\r\nContent-Length: 0\r\n\r\n";
    const OUR_INVITE: &str = "INVITE sip:police@203.0.113.5:5081 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1;rport\r\nMax-Forwards: 70\r\n\
        From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@203.0.113.5:5081>\r\n\
        Call-ID: b-leg@gw\r\nCSeq: 1 INVITE\r\nContact: <sip:siaga@192.0.2.1:5060>\r\n\
        Content-Length: 0\r\n\r\n";
    const AGENCY_200: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1;rport\r\n\
        Record-Route: <sip:r1.example;lr>, <sip:r2.example;lr>\r\n\
        From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@203.0.113.5:5081>;tag=pol9\r\n\
        Call-ID: b-leg@gw\r\nCSeq: 1 INVITE\r\nContact: <sip:desk3@203.0.113.6:5090>\r\n\
        Content-Length: 0\r\n\r\n";

    fn flow(local: &str, remote: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            remote: remote.parse().expect("addr"),
            local: local.parse().expect("addr"),
            conn: None,
        }
    }

    fn logged<'a>(leg: LegId, direction: Direction, raw: &'a str) -> LoggedMessage<'a> {
        let remote = match leg {
            LegId::Caller => "198.51.100.7:5062",
            LegId::Agency(_) => "203.0.113.5:5081",
        };
        LoggedMessage {
            leg,
            direction,
            flow: flow("192.0.2.1:5060", remote),
            raw: raw.as_bytes(),
        }
    }

    fn bridged() -> Vec<LoggedMessage<'static>> {
        vec![
            logged(LegId::Caller, Direction::In, CALLER_INVITE),
            logged(LegId::Caller, Direction::Out, OUR_200),
            logged(LegId::Agency(1), Direction::Out, OUR_INVITE),
            logged(LegId::Agency(1), Direction::In, AGENCY_200),
        ]
    }

    fn dialogs(messages: &[LoggedMessage]) -> Vec<OpenDialog> {
        left_open(CallRef(4), messages)
            .into_iter()
            .map(|d| d.expect("buildable"))
            .collect()
    }

    fn parse_bye(bytes: &[u8]) -> Inbound {
        let msg = parse::parse(bytes, Framing::Datagram).expect("our BYE parses");
        assert!(matches!(&msg.message, Message::Request(r) if r.method == Method::Bye));
        msg
    }

    #[test]
    fn a_bridged_call_gives_a_bye_for_each_leg_built_from_the_logged_messages() {
        let open = dialogs(&bridged());
        assert_eq!(open.len(), 2);
        let (caller, agency) = (&open[0], &open[1]);

        assert_eq!(caller.leg, LegId::Caller);
        assert_eq!(caller.flow, flow("192.0.2.1:5060", "198.51.100.7:5062"));
        let bye = caller.bye(&Branch("z9hG4bKr1".into()));
        let text = String::from_utf8(bye.clone()).expect("text");
        assert!(
            text.starts_with("BYE sip:+6281@198.51.100.7:5062 SIP/2.0\r\n"),
            "{text}"
        );
        // UAS route set: Record-Route in order.
        assert!(text.contains("Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>\r\n"));
        assert!(
            text.contains("From: <sip:112@192.0.2.1>;tag=gw1\r\n"),
            "{text}"
        );
        assert!(text.contains("To: \"Caller\" <sip:+6281@198.51.100.7>;tag=caller1\r\n"));
        assert!(text.contains("Reason: SIP;cause=200;text=\"gateway_restarted\"\r\n"));
        let msg = parse_bye(&bye);
        assert_eq!(msg.call_id.as_str(), "a-leg@x");
        assert_eq!((msg.cseq, msg.cseq_method.as_str()), (1, "BYE"));
        assert_eq!(msg.top_via.branch, Some(Branch("z9hG4bKr1".into())));

        assert_eq!(agency.leg, LegId::Agency(1));
        assert_eq!(agency.flow, flow("192.0.2.1:5060", "203.0.113.5:5081"));
        let bye = agency.bye(&Branch("z9hG4bKr2".into()));
        let text = String::from_utf8(bye.clone()).expect("text");
        // The remote target is the 2xx's Contact; UAC route set: Record-Route reversed.
        assert!(
            text.starts_with("BYE sip:desk3@203.0.113.6:5090 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("Route: <sip:r2.example;lr>\r\nRoute: <sip:r1.example;lr>\r\n"));
        assert!(text.contains("From: <sip:+6281@siaga.invalid>;tag=gwb1\r\n"));
        assert!(text.contains("To: <sip:police@203.0.113.5:5081>;tag=pol9\r\n"));
        let msg = parse_bye(&bye);
        assert_eq!((msg.cseq, msg.call_id.as_str()), (2, "b-leg@gw"));
    }

    #[test]
    fn a_tcp_callers_bye_goes_to_the_next_hop_the_dialog_names_not_to_its_old_port() {
        let tcp = |raw: &str| raw.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        let over_tcp = |direction, raw| LoggedMessage {
            flow: Flow {
                transport: Transport::Tcp,
                ..flow("192.0.2.1:5060", "198.51.100.7:5062")
            },
            ..logged(LegId::Caller, direction, raw)
        };
        let ok = tcp(OUR_200);
        // Record-Route names host names: nothing to connect to but the old address.
        let invite = tcp(CALLER_INVITE);
        let open = dialogs(&[
            over_tcp(Direction::In, &invite),
            over_tcp(Direction::Out, &ok),
        ]);
        assert_eq!(
            open[0].flow.remote,
            "198.51.100.7:5062".parse().expect("addr")
        );
        // No routes, and the Contact is an address: there.
        let invite = invite
            .replace(
                "Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n",
                "",
            )
            .replace(
                "<sip:+6281@198.51.100.7:5062>",
                "<sip:+6281@198.51.100.9;transport=tcp>",
            );
        let open = dialogs(&[
            over_tcp(Direction::In, &invite),
            over_tcp(Direction::Out, &ok),
        ]);
        assert_eq!(
            open[0].flow.remote,
            "198.51.100.9:5060".parse().expect("addr")
        );
        let bye = String::from_utf8(open[0].bye(&Branch("z9hG4bKt".into()))).expect("text");
        assert!(
            bye.starts_with(
                "BYE sip:+6281@198.51.100.9;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP "
            ),
            "{bye}"
        );
    }

    #[test]
    fn legs_whose_dialog_a_bye_ended_are_not_listed() {
        let caller_bye = "BYE sip:siaga@192.0.2.1:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKc2\r\n\
            From: \"Caller\" <sip:+6281@198.51.100.7>;tag=caller1\r\n\
            To: <sip:112@192.0.2.1>;tag=gw1\r\nCall-ID: a-leg@x\r\nCSeq: 8 BYE\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let our_bye = "BYE sip:desk3@203.0.113.6:5090 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb2;rport\r\nMax-Forwards: 70\r\n\
            From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@203.0.113.5:5081>;tag=pol9\r\n\
            Call-ID: b-leg@gw\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        let its_200 = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb2;rport\r\n\
            From: <sip:+6281@siaga.invalid>;tag=gwb1\r\nTo: <sip:police@203.0.113.5:5081>;tag=pol9\r\n\
            Call-ID: b-leg@gw\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";

        // The caller hung up; we were still waiting for the agency's answer to our BYE.
        let mut messages = bridged();
        messages.push(logged(LegId::Caller, Direction::In, caller_bye));
        messages.push(logged(LegId::Agency(1), Direction::Out, our_bye));
        let open = dialogs(&messages);
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].leg, LegId::Agency(1));
        // Our unanswered BYE used CSeq 2: the new one goes above it.
        assert_eq!(open[0].cseq, 3);

        messages.push(logged(LegId::Agency(1), Direction::In, its_200));
        assert!(dialogs(&messages).is_empty());
    }

    #[test]
    fn legs_never_answered_are_not_listed_and_garbage_is_skipped() {
        let messages = vec![
            logged(LegId::Caller, Direction::In, CALLER_INVITE),
            logged(LegId::Caller, Direction::In, "not SIP at all"),
            logged(LegId::Agency(1), Direction::Out, OUR_INVITE),
        ];
        assert!(left_open(CallRef(4), &messages).is_empty());
    }
}
