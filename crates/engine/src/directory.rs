//! Where agency targets are on the network, as the shell resolved them.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::net::{Flow, Transport};

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
    pub local_tls: Option<SocketAddr>,
}

impl Directory {
    /// `host:port` key of a SIP URI (IPv6 in brackets), port 5060 by default (5061 for
    /// `sips:` and `;transport=tls`).
    pub fn key_of(uri: &str) -> Option<String> {
        let uri = uri.trim().trim_start_matches('<');
        let uri = uri.split(['>', '?']).next()?;
        let mut parts = uri.split(';');
        let rest = parts.next()?;
        let tls = parts.any(|p| p.eq_ignore_ascii_case("transport=tls"));
        let (rest, default_port) = match rest.strip_prefix("sips:") {
            Some(rest) => (rest, 5061),
            None => (rest.strip_prefix("sip:")?, if tls { 5061 } else { 5060 }),
        };
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
            format!("{}:{default_port}", hostport.to_ascii_lowercase())
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
                    Transport::Tls => hop.local_tls,
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
        assert_eq!(
            Directory::key_of("<sips:polisi@psap.example.org>").as_deref(),
            Some("psap.example.org:5061")
        );
        assert_eq!(
            Directory::key_of("sip:polisi@10.0.0.5;lr;transport=TLS").as_deref(),
            Some("10.0.0.5:5061")
        );
    }
}
