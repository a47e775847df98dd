//! Network paths as the engine sees them: transport, addresses, direction.

use std::net::SocketAddr;

use crate::ids::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
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
    /// The TCP connection, when the transport is a stream.
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
