//! Network paths as the engine sees them: transport, addresses, direction.

use std::net::SocketAddr;

use crate::ids::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over TLS on TCP (RFC 3261 §26.2, RFC 5630).
    Tls,
}

impl Transport {
    pub fn as_via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// A connection-oriented transport: framed by Content-Length, reliable, one connection
    /// per peer.
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// The port a URI without one means on this transport (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        }
    }
}

/// One network path: where a message came from and how to answer on the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub remote: SocketAddr,
    /// Our address as the peer sees it (the shell resolves wildcard binds to a routable
    /// address), used in Via, Contact and SDP.
    pub local: SocketAddr,
    /// The connection, when the transport is a stream (TCP or TLS).
    pub conn: Option<ConnId>,
}

/// Which way a SIP message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}
