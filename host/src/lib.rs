//! rekuest-host: runs Arkitekt rekuest actions as sandboxed WebAssembly components.
//!
//! - [`runtime`]: the wasmtime sandbox (engine, components, per-task stores and limits).
//! - [`definition`]: action definitions as rekuest's `DefinitionInput`, and arg checking.
#![warn(missing_docs)]

pub mod definition;
pub mod runtime;
