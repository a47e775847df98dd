//! Identifier newtypes: a Call-ID is not a tag is not a branch, and the compiler should know.

use std::fmt;

/// The gateway's own number for a call; the primary key of the call log.
///
/// Handed out by the engine from a base the shell supplies (so numbers stay unique across
/// restarts without the engine reading a clock or a database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

impl fmt::Display for CallRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

siaga_ids::string_id! {
    /// The SIP Call-ID header value, as the peer sent it.
    pub struct CallId(pub String);
}
siaga_ids::string_id! {
    /// A From/To tag.
    pub struct Tag(pub String);
}
siaga_ids::string_id! {
    /// A Via branch parameter.
    pub struct Branch(pub String);
}

/// One TCP connection as the shell numbers it; responses go back on the connection the
/// request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The number of one agency leg within its call: B1, B2, … in the call's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegNo(pub u32);

impl fmt::Display for LegNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<LegNo> for LegId {
    fn from(n: LegNo) -> Self {
        LegId::Agency(n.0)
    }
}

/// Which side of a B2BUA call a message belongs to: the caller's leg, or one outbound leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LegId {
    Caller,
    Agency(u32),
}

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegId::Caller => f.write_str("A"),
            LegId::Agency(n) => write!(f, "B{n}"),
        }
    }
}
