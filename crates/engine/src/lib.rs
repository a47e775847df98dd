//! Siaga's signalling core. Pure: no sockets, no clock, no files, no threads. Bytes and time
//! go in through [`Engine::handle_input`]; datagrams, log records and media commands come
//! out through [`Engine::poll_output`]; [`Engine::poll_timeout`] says when to call again.

mod bridge;
pub mod call;
mod engine;
#[cfg(feature = "harness")]
pub mod harness;
pub mod ids;
pub mod io;
pub mod noncall;
pub mod restart;
mod session;
pub mod sip;
pub mod source_limits;
pub mod timers;
pub mod transaction;

pub use bridge::{Directory, Hop};
pub use engine::{DeadSessionConfig, Engine, EngineConfig};
pub use siaga_dialplan as dialplan;
