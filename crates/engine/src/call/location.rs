//! Where the caller is: every location hint of a request read and logged (never failing the
//! call), the latest located report kept for the agency.

use rsipstack::sip::{Header, Request};
use siaga_location::{LocationInput, LocationReport};

use crate::effects::Effects;
use crate::ids::CallRef;
use crate::io::LogRecord;
use crate::sip::read::header_value;
use crate::timeline::CallEventKind;

/// Reads every location hint in a request and logs it; returns the report when it holds a
/// location (the latest one is what the agency is sent).
pub(crate) fn record(
    fx: &mut Effects,
    call_ref: CallRef,
    source: &'static str,
    req: &Request,
    initial: bool,
) -> Option<LocationReport> {
    let values = |name: &str| -> Vec<String> {
        req.headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
            .map(|h| h.value().to_owned())
            .collect()
    };
    let geolocation = values("Geolocation");
    let routing = values("Geolocation-Routing");
    let pani = values("P-Access-Network-Info");
    let content_type = header_value(req, |h| matches!(h, Header::ContentType(_)));
    let content_id = values("Content-ID").into_iter().next();
    let geolocation: Vec<&str> = geolocation.iter().map(String::as_str).collect();
    let routing: Vec<&str> = routing.iter().map(String::as_str).collect();
    let pani: Vec<&str> = pani.iter().map(String::as_str).collect();
    let nothing_sent =
        geolocation.is_empty() && pani.is_empty() && !req.body.windows(4).any(|w| w == b"pidf");
    if !initial && nothing_sent {
        return None; // a re-INVITE without location hints says nothing new
    }
    let input = LocationInput {
        geolocation: &geolocation,
        geolocation_routing: &routing,
        p_access_network_info: &pani,
        content_type: content_type.as_deref(),
        content_id: content_id.as_deref(),
        body: &req.body,
        default_location: if initial {
            fx.cfg.default_location.as_ref()
        } else {
            None
        },
    };
    let report = siaga_location::extract(&input, fx.cfg.cells.as_deref());
    for problem in &report.problems {
        fx.timeline(
            call_ref,
            CallEventKind::LocationProblem,
            problem.to_string(),
        );
    }
    let has_location = !report.locations.is_empty();
    fx.log(LogRecord::Location {
        call: call_ref,
        source,
        report: Box::new(report.clone()),
    });
    has_location.then_some(report)
}

impl super::Call {
    pub(crate) fn record_location(
        &mut self,
        fx: &mut Effects,
        source: &'static str,
        req: &Request,
        initial: bool,
    ) -> Option<LocationReport> {
        record(fx, self.call_ref, source, req, initial)
    }
}
