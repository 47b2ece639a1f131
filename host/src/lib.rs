//! rekuest-host: runs Arkitekt rekuest actions as sandboxed WebAssembly components.
//!
//! - [`runtime`]: the wasmtime sandbox (engine, components, per-task stores and limits).
//! - [`definition`]: action definitions as rekuest's `DefinitionInput`, and arg checking.
//! - [`envelope`]: structures on the wire (the official client's `{"__identifier", "object"}`).
//! - [`protocol`]: the rekuest agent protocol's frames and endpoints.
//! - [`agent`]: registration and the agent socket: serving actions to a rekuest server.
//! - [`config`]: the `rekuest-host.toml` file.
//! - `devserver`: a local rekuest-compatible server for development and tests (the
//!   `devserver` feature, on by default).
//! - [`login`]: joining an Arkitekt deployment (fakts discovery, the claim, access tokens).
//! - [`tls`]: the certificate authorities outbound connections trust.
//! - [`text`]: guest and server text made safe for a terminal.
//! - [`error_chain`]: an error with its causes, each said once.
#![deny(missing_docs)]

pub mod agent;
pub mod config;
pub mod definition;
#[cfg(feature = "devserver")]
pub mod devserver;
pub mod envelope;
pub mod error_chain;
pub mod login;
pub mod protocol;
pub mod runtime;
pub mod text;
pub mod tls;
