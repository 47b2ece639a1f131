//! What outlives a task, kept by the host: memory shelves ([`Shelved`]) and agent states
//! ([`State`], read and changed through [`Context::state`](crate::Context::state) and
//! [`Context::set_state`](crate::Context::set_state)).

use std::ops::{Deref, DerefMut};

use serde_json::Value;

use crate::port::{Path, Port, PortError, PortKind, PortSpec};

/// The identifier of every shelved value's MEMORY_STRUCTURE port.
pub const SHELVED_IDENTIFIER: &str = "@rekuest-host/shelved";

/// A value that stays on the agent: returned, the host keeps it in a drawer and the caller
/// gets a reference (a MEMORY_STRUCTURE); taken as an arg, the reference is expanded back into
/// the value. A reference from another agent, or to a collected drawer, fails the task
/// (FAILED) naming the drawer. Drawers live as long as the host process.
#[derive(Debug, Clone, PartialEq)]
pub struct Shelved<T>(pub T);

impl<T> Shelved<T> {
    /// The shelved value itself.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Shelved<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Shelved<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Shelved<T> {
    fn from(value: T) -> Self {
        Shelved(value)
    }
}

impl<T: Port> Port for Shelved<T> {
    fn port() -> PortSpec {
        PortSpec::new(PortKind::MemoryStructure).identified(SHELVED_IDENTIFIER)
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        let drawer = match value {
            Value::String(drawer) => drawer,
            Value::Number(number) => number.to_string(),
            other => return Err(path.mismatch::<Self>(&other)),
        };
        let json = host::unshelve(&drawer).map_err(|reason| path.error(reason))?;
        let value: Value = serde_json::from_str(&json)
            .map_err(|error| path.error(format!("drawer '{drawer}' holds no JSON: {error}")))?;
        T::decode(value, path).map(Shelved)
    }

    fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
        let value = self.0.encode(path)?;
        host::shelve(SHELVED_IDENTIFIER, &value.to_string())
            .map(Value::String)
            .map_err(|reason| path.error(reason))
    }
}

/// An agent state: a [`Model`](crate::Model) the host keeps between tasks under [`KEY`]
/// (`impl State for Position { const KEY: &'static str = "position"; }`). An action declares
/// the states it uses with `#[register(state = Position)]`; the host registers their schemas
/// with the server and streams every change to it.
///
/// [`KEY`]: State::KEY
pub trait State: Port + Clone {
    /// The state's key (an identifier), unique on the agent.
    const KEY: &'static str;
}

/// A state's schema, as `describe` declares it: the state's key, the model's identifier as its
/// name, the model's fields as its ports.
pub use rekuest_definition::StateSchema;

/// The schema of the state `S`.
pub fn state_schema<S: State>() -> StateSchema {
    let port = S::port();
    StateSchema {
        key: S::KEY.to_owned(),
        name: port.identifier.unwrap_or_else(|| S::KEY.to_owned()),
        ports: port.children.unwrap_or_default(),
    }
}

/// The host's `keep` imports (only a wasm build reaches a host).
#[cfg(target_arch = "wasm32")]
pub(crate) mod host {
    use crate::bindings::arkitekt::rekuest::keep;

    pub(crate) fn shelve(identifier: &str, value_json: &str) -> Result<String, String> {
        keep::shelve(identifier, value_json)
    }

    pub(crate) fn unshelve(drawer: &str) -> Result<String, String> {
        keep::unshelve(drawer)
    }
}

/// Natively (the crate's own tests) there is no host to keep anything.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod host {
    const NO_HOST: &str = "shelves need the rekuest host (this is a native build)";

    pub(crate) fn shelve(_identifier: &str, _value_json: &str) -> Result<String, String> {
        Err(NO_HOST.into())
    }

    pub(crate) fn unshelve(_drawer: &str) -> Result<String, String> {
        Err(NO_HOST.into())
    }
}
