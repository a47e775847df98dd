//! What the agency learns about the caller: identity (as the trust domain allows), location
//! (by reference or by value), category and the NENA i3 identifiers.

use std::fmt::Write as _;

use siaga_dialplan::{LocationConveyance, TrustDomain};

use super::{AgencyLeg, AgencySide, CallerView, OwnedBody};
use crate::effects::Effects;
use crate::ids::LegNo;
use crate::sip::parse;
use crate::sip::read::uri_of;

impl AgencySide {
    /// The headers and body that tell the agency who and where the caller is.
    pub(super) fn agency_payload(
        &self,
        call: &CallerView<'_>,
        fx: &Effects,
        leg: &AgencyLeg,
        sdp: &str,
    ) -> (Vec<(&'static str, String)>, OwnedBody) {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let trusted = leg.target.trust == TrustDomain::Inside;
        // Identity: inside the trust domain the agency always learns who is calling, even
        // under `Privacy: id` (RFC 3325); outside it, privacy is honoured.
        if trusted {
            let pai = if call.identity.p_asserted_identity.is_empty() {
                vec![format!("<{}>", uri_of(call.remote_party))]
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
                call.emergency_call_id, call.incident_id
            ),
        ));
        headers.push(("X-Siaga-Category", self.route_id.to_string()));
        headers.push(("X-Siaga-Dialled", call.invite.uri.to_string()));
        headers.push(("X-Siaga-IVR", self.reason.clone()));
        if self.urgent {
            headers.push(("X-Siaga-Urgent", "silent caller".to_owned()));
        }
        if let Some(of) = leg.transfer_of {
            headers.push(("X-Siaga-Transferred-From", format!("leg B{of}")));
        }
        if let Some(note) = call.policy_note {
            // The call-taker knows what the caller already heard (a warning) and why.
            headers.push(("X-Siaga-Policy", note.to_owned()));
        }
        // Location, as the target is configured to take it.
        let report = call.location;
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
                            uri_of(call.remote_party)
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
                    let boundary = format!("siaga-{}", boundary_token(fx, leg.n));
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
}
/// A multipart boundary unique to the leg.
fn boundary_token(fx: &Effects, n: LegNo) -> String {
    format!("{:x}{n}", fx.next_call_ref)
}

/// `fmt::Write` into a byte vector (text parts of a multipart body).
struct LossyWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for LossyWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
