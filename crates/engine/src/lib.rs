//! Siaga's signalling core. Pure: no sockets, no clock, no files, no threads. Bytes and time
//! go in through [`Engine::handle_input`]; datagrams, log records and media commands come
//! out through [`Engine::poll_output`]; [`Engine::poll_timeout`] says when to call again.

pub mod ids;
pub mod sip;
pub mod transaction;
