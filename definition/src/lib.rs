//! The rekuest definition model that both sides of the sandbox speak: the guest SDK builds
//! [`Definition`]s of [`Port`]s to describe its actions, the host reads them back from that
//! self-description (and from servers), and both explain a value that does not fit its port the
//! same way ([`PortError`], [`describe_value`]). The [`LogLevel`] of a guest's log lines is
//! shared the same way.
//!
//! Plain data with serde; no wasmtime, so it builds for `wasm32-wasip2` as well as the host.
#![deny(missing_docs)]

mod action;
mod log;
mod mismatch;
mod port;

pub use action::{Definition, Dependency, StateSchema};
pub use log::LogLevel;
pub use mismatch::{PortError, Side, describe_value};
pub use port::{ActionKind, Choice, Port, PortKind};
