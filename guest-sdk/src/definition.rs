//! Definitions: what `#[register]` generates to describe an action, and the JSON list that
//! the component's `describe` export returns (rekuest's `DefinitionInput`, built from ports of
//! the shared `rekuest-definition` model).

use serde_json::Value;

use crate::dispatch::Action;
use crate::port::{Port, PortSpec};

/// Whether an action yields once (FUNCTION) or once per item (GENERATOR).
pub use rekuest_definition::ActionKind;
/// One action's definition (rekuest's `DefinitionInput`): `#[register]` fills it from the
/// function (key: its name; version `"1"` and the name in Title Case unless
/// `#[register(version = "...", name = "...")]`; the doc comment's summary and body as the
/// description, `No Description` without one; one port per parameter and return).
pub use rekuest_definition::Definition;
/// A dependency slot: an action this one calls, by key or hash
/// (`#[register(dependency = "add")]`).
pub use rekuest_definition::Dependency;

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
