//! TEMPORARY: the emergency numbers until the dialplan crate is wired in.

use siaga_engine::Router;
use siaga_engine::io::CallKind;

pub struct StaticRouter;

impl Router for StaticRouter {
    fn classify(&self, uri: &str) -> CallKind {
        let lower = uri.to_ascii_lowercase();
        if lower.starts_with("urn:service:test.sos") {
            return CallKind::Test;
        }
        if lower == "urn:service:sos" || lower.starts_with("urn:service:sos.") {
            return CallKind::Emergency {
                entry: "main".into(),
            };
        }
        let user = lower
            .trim_start_matches("sips:")
            .trim_start_matches("sip:")
            .trim_start_matches("tel:")
            .split(['@', ';'])
            .next()
            .unwrap_or_default()
            .to_owned();
        if ["112", "110", "113", "115", "118", "119"].contains(&user.as_str()) {
            CallKind::Emergency { entry: user }
        } else {
            CallKind::NotEmergency
        }
    }

    fn centre_name(&self) -> &str {
        "Siaga 112"
    }
}
