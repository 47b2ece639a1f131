//! Definitions: what `#[register]` generates to describe an action, and the JSON list that
//! the component's `describe` export returns (rekuest's `DefinitionInput`, built from ports of
//! the shared `rekuest-definition` model).

use serde::Serialize;
use serde_json::Value;

use crate::dispatch::Action;
use crate::port::{Port, PortSpec};

/// Whether an action yields once (FUNCTION) or once per item (GENERATOR).
pub use rekuest_definition::ActionKind;

/// One action's definition, serialized in the shape of rekuest's `DefinitionInput`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    /// Unique key within the component: the function's name.
    pub key: &'static str,
    /// Version of the algorithm: `"1"` unless `#[register(version = "...")]`.
    pub version: &'static str,
    /// Display name: the function name in Title Case unless `#[register(name = "...")]`.
    pub name: &'static str,
    /// The doc comment's summary and body (argument bullets and `# Returns` left out);
    /// `No Description` without a doc comment.
    pub description: &'static str,
    /// FUNCTION or GENERATOR.
    pub kind: ActionKind,
    /// Whether the action keeps state between calls; false: agent states are declared in
    /// `states` instead.
    pub stateful: bool,
    /// UI groups the action is listed under; none from this SDK.
    pub collections: &'static [&'static str],
    /// Other actions it calls through dependency slots.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub dependencies: &'static [Dependency],
    /// Locks its tasks hold while they run (`#[register(lock = "stage")]`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub locks: &'static [&'static str],
    /// Agent states it uses (`#[register(state = Position)]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<crate::StateSchema>,
    /// One port per parameter (a `Context` parameter is none), keyed by the parameter name.
    pub args: Vec<PortSpec>,
    /// Output ports, keyed `return0`, `return1`, ...
    pub returns: Vec<PortSpec>,
}

/// A dependency slot: an action this one calls, by key or hash
/// (`#[register(dependency = "add")]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The slot's name; calls through it name it.
    pub key: &'static str,
    /// The demanded action's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The demanded action's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<&'static str>,
    /// Whether the action works without it.
    pub optional: bool,
}

/// The port of the arg or return `key` of type `T`, with what `#[arg(...)]` or the doc comment
/// gives it (a default also makes it nullable).
pub fn port<T: Port>(
    key: &str,
    description: Option<&str>,
    label: Option<&str>,
    default: Option<Value>,
) -> PortSpec {
    let port = T::port().keyed(key).described(description).labelled(label);
    match default {
        Some(default) => port.defaulted(default),
        None => port,
    }
}

/// The JSON list of the actions' definitions, in the order given: what the component's
/// `describe` export returns.
pub fn describe(actions: &[Action]) -> String {
    let definitions: Vec<Definition> = actions.iter().map(|action| (action.definition)()).collect();
    serde_json::to_string(&definitions).expect("definitions are plain JSON")
}
