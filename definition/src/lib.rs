//! The rekuest definition model that both sides of the sandbox speak: the guest SDK builds
//! [`Port`]s to describe its actions, the host reads them back from that self-description (and
//! from servers), and both explain a value that does not fit its port the same way
//! ([`PortError`], [`describe_value`]).
//!
//! Plain data with serde; no wasmtime, so it builds for `wasm32-wasip2` as well as the host.
#![deny(missing_docs)]

mod mismatch;
mod port;

pub use mismatch::{PortError, Side, describe_value};
pub use port::{ActionKind, Choice, Port, PortKind};
