//! SIP messages: framing, tolerant parsing with strict validation, and building replies.

pub mod alias;
pub mod build;
pub mod framer;
pub mod parse;
pub(crate) mod read;
pub(crate) mod support;
