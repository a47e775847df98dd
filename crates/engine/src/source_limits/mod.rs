//! Per-source limits for the transport shell: a message budget per source address (token
//! bucket), TCP connection counts per source and in total, the deadlines of one stream
//! connection, and the cheap look at a message's first line that decides which of these
//! apply. Pure: time is an argument, tables are bounded.
//!
//! An outsider chooses how much we spend on it; these limits make that bounded per source
//! and in total, while an emergency INVITE is never refused here: INVITEs have a budget of
//! their own, and over it only those whose Request-URI the dialplan calls emergency or test
//! pass.

mod handshakes;
mod messages;
mod streams;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv6Addr};

use siaga_dialplan::{Classified, Dialplan};

pub use handshakes::*;
pub use messages::*;
pub use streams::*;

/// Who a limit is kept for: an IPv4 address, or an IPv6 /64 (one host's usual share; keying
/// by full address would let one host take any number of entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => SourceKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    SourceKey(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network: write an address or ADDRESS/PREFIX, e.g. 10.0.0.0/8")]
pub struct IpNetError(String);

impl std::str::FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpNetError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) if self.addr.is_ipv4() => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            other => other,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Sources exempt from every per-source limit (the centre's own SBCs, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(pub Vec<IpNet>);

impl Trusted {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// How a message is treated before it is parsed, from its first bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A new INVITE: its own budget per source, and over it only emergency and test calls
    /// pass; never queued behind bulk traffic.
    Invite,
    /// Requests that only make sense inside a call (ACK, BYE, CANCEL, re-INVITEs and OPTIONS
    /// with a To-tag, …) and responses: within the source's budget, ahead of bulk traffic.
    Call,
    /// Everything else (OPTIONS, REGISTER, garbage): within the budget, and dropped when the
    /// bulk queue is full.
    Bulk,
}

impl Lane {
    /// Looks at the first token (after keep-alive line ends) and, for INVITE and OPTIONS, at
    /// the To header's tag: no parsing, no allocation.
    pub fn of(message: &[u8]) -> Lane {
        let rest = skip_line_ends(message);
        let token_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        match rest.get(..token_end).unwrap_or_default() {
            // In a dialog: a re-INVITE, or an SBC's or agency's session check, which must be
            // answered in a flood or the peer tears down a live call.
            b"INVITE" | b"OPTIONS" if has_to_tag(rest) => Lane::Call,
            b"INVITE" => Lane::Invite,
            b"ACK" | b"BYE" | b"CANCEL" | b"PRACK" | b"UPDATE" | b"INFO" | b"REFER" | b"NOTIFY"
            | b"SIP/2.0" => Lane::Call,
            _ => Lane::Bulk,
        }
    }
}

fn skip_line_ends(message: &[u8]) -> &[u8] {
    let start = message
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(message.len());
    message.get(start..).unwrap_or_default()
}

/// Whether the header section has a To (or `t`) header with a `tag` parameter.
fn has_to_tag(message: &[u8]) -> bool {
    let mut lines = message.split(|&b| b == b'\n');
    lines.next(); // the request line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            // A parameter: after a `;`, outside the URI's angle brackets when it has them.
            let params = match value.iter().rposition(|&b| b == b'>') {
                Some(close) => value.get(close..).unwrap_or_default(),
                None => value,
            };
            return params.split(|&b| b == b';').skip(1).any(|p| {
                let p = p.trim_ascii_start();
                p.len() > 3
                    && p[..3].eq_ignore_ascii_case(b"tag")
                    && p[3..].trim_ascii_start().starts_with(b"=")
            });
        }
    }
    false
}

/// The Request-URI of a request, from its first line (`None` when there is no such token).
fn request_uri(message: &[u8]) -> Option<&str> {
    let rest = skip_line_ends(message);
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest.get(..line_end)?;
    let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    tokens.next()?;
    std::str::from_utf8(tokens.next()?).ok()
}

/// Whether a request's Request-URI dials what `plan` answers as an emergency or a test call:
/// the check that lets an INVITE over its source's budget through. Costs one look at the
/// request line and one plan lookup, no parsing of the message.
pub fn dials_emergency(plan: &Dialplan, message: &[u8]) -> bool {
    request_uri(message).is_some_and(|uri| !matches!(plan.classify(uri), Classified::NotEmergency))
}
