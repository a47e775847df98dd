//! Siaga's signalling core. Pure: no sockets, no clock, no files, no threads. Bytes and time
//! go in through [`Engine::handle_input`]; datagrams, log records and media commands come
//! out through [`Engine::poll_output`]; [`Engine::poll_timeout`] says when to call again.
//!
//! A call's journey, one module per step:
//!
//! | step | module |
//! |---|---|
//! | bytes in, parsed (tolerant, validated) | `sip::parse`, `sip::framer` |
//! | retransmissions absorbed, transactions run | `transaction` (`table`, `server`, `client`) |
//! | the message routed to its call, or answered statelessly | `engine` (the dispatcher), `noncall` |
//! | an INVITE becomes a call | `engine::new_call`, `call::location` |
//! | ringing, answer, the caller's dialog | `call::dialog`, `session` (SDP) |
//! | number policies: warning, block, queue priority | `call::policy`, `route_queue` |
//! | IVR: prompts, digits, the route decision | `call::ivr`, `call::media_events` |
//! | an agency rung, failover, queue, transfer | `agency` (`legs`, `payload`, `queue`, `transfer`) |
//! | hang-up and the call's end | `call::ending`, `call::probe` |
//! | everything a call does to the world | `effects` (outputs, transactions, timers) |
//!
//! Around them: `io` (the engine's doors), `net` (flows), `ids` (newtypes), `timers` (one
//! queue), `directory` (where agencies are), `restart` (dialogs a crash left up),
//! `source_limits` (per-source budgets before parsing), `route_queue` (who waits first),
//! `config`, `end_reason`.

mod agency;
pub mod call;
mod config;
mod directory;
mod effects;
pub mod end_reason;
mod engine;
#[cfg(feature = "harness")]
pub mod harness;
pub mod ids;
pub mod io;
pub mod net;
pub mod noncall;
pub mod restart;
mod route_queue;
mod session;
pub mod sip;
pub mod source_limits;
pub mod timeline;
pub mod timers;
pub mod transaction;

pub use agency::QueuePriority;
pub use agency::plan_transport as agency_transport;
pub use config::{EngineConfig, SilentCallerProbe};
pub use directory::{Directory, Hop};
pub use engine::Engine;
pub use engine::gauges::{CallGauges, CallPhase, LiveCall};
pub use siaga_dialplan as dialplan;
pub use transaction::table::TxCounters;
