//! Actions in the shape of rekuest's GraphQL `DefinitionInput`, with the dependency slots,
//! locks and agent states a component declares beside them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::port::{ActionKind, Port};

/// One action as a component describes itself (the JSON list its `describe` export returns).
///
/// Serialized in the guest SDK's field order, with `dependencies`, `locks` and `states` only
/// when declared; deserializing refuses unknown fields, so that a typo in a self-description is
/// not silently dropped ([`Definition::from_server`] reads the tolerant form a server lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Definition {
    /// Unique key within the component; the `interface` the server echoes in ASSIGN.
    pub key: String,
    /// Version of the algorithm.
    pub version: String,
    /// Display name.
    pub name: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// FUNCTION or GENERATOR.
    pub kind: ActionKind,
    /// Whether the action keeps state between calls (agent states are declared in `states`).
    #[serde(default)]
    pub stateful: bool,
    /// Same args always give the same result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pure: bool,
    /// Safe to run twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// UI groups the action is listed under.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Other actions it calls through dependency slots. Registered with its implementation
    /// (`implementAgent`), not as part of the definition the server stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    /// Locks the action holds while it runs: tasks sharing one run one at a time on the
    /// agent. Registered with its implementation, not in the definition the server stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
    /// Agent states the action reads or changes through the host; registered with the agent
    /// (`implementAgent`'s `states`), not in the definition the server stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<StateSchema>,
    /// Input ports, keyed by the argument names.
    #[serde(default)]
    pub args: Vec<Port>,
    /// Output ports, keyed `return0`, `return1`, ...
    #[serde(default)]
    pub returns: Vec<Port>,
}

/// A dependency slot: an action another one calls, by its key or its hash; the server picks
/// an implementation when the slot is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The slot's name, which calls through it give.
    pub key: String,
    /// The demanded action's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The demanded action's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Whether the action works without it.
    #[serde(default)]
    pub optional: bool,
}

/// An agent state's schema: a MODEL-like set of ports under a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSchema {
    /// The state's key: its `interface` on the server and its name in the host API.
    pub key: String,
    /// Display name.
    pub name: String,
    /// One port per field of the state's value.
    #[serde(default)]
    pub ports: Vec<Port>,
}

impl Definition {
    /// Reads a definition as a rekuest server lists it.
    ///
    /// Unlike a guest's self-description (deserialized as a [`Definition`], which refuses unknown
    /// fields so that a typo is not silently dropped from what gets registered), a definition
    /// that comes from a server may carry fields this model does not hold: other agents (the Python one
    /// sends `validators`, `effects`, `widget`, `portGroups`, `isTestFor`, `isDev`, ...) and
    /// newer servers add them. They are ignored, and a null list or flag reads as empty or
    /// `false`.
    /// No consistency checks run: the definition is only used to read a caller's args.
    pub fn from_server(value: Value) -> Result<Definition, serde_json::Error> {
        serde_json::from_value::<server::Definition>(value).map(Definition::from)
    }
}

/// Tolerant twins of [`Definition`], [`Port`](crate::Port) and [`Choice`](crate::Choice) for definitions a server lists:
/// the same fields without `deny_unknown_fields`, converted field by field (so a field added
/// to the strict types fails to compile here until it is added).
mod server {
    use serde::Deserialize;
    use serde_json::Value;

    use crate::port::{ActionKind, PortKind};

    #[derive(Deserialize)]
    pub(super) struct Choice {
        value: Value,
        label: String,
        #[serde(default)]
        description: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct Port {
        key: String,
        kind: PortKind,
        #[serde(default)]
        nullable: Option<bool>,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        identifier: Option<String>,
        #[serde(default)]
        children: Option<Vec<Port>>,
        #[serde(default)]
        default: Option<Value>,
        #[serde(default)]
        choices: Option<Vec<Choice>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Definition {
        key: String,
        version: String,
        name: String,
        #[serde(default)]
        description: Option<String>,
        kind: ActionKind,
        #[serde(default)]
        args: Option<Vec<Port>>,
        #[serde(default)]
        returns: Option<Vec<Port>>,
        #[serde(default)]
        stateful: Option<bool>,
        #[serde(default)]
        pure: Option<bool>,
        #[serde(default)]
        idempotent: Option<bool>,
        #[serde(default)]
        collections: Option<Vec<String>>,
    }

    fn ports(ports: Option<Vec<Port>>) -> Vec<crate::port::Port> {
        ports
            .unwrap_or_default()
            .into_iter()
            .map(crate::port::Port::from)
            .collect()
    }

    impl From<Choice> for crate::port::Choice {
        fn from(choice: Choice) -> Self {
            crate::port::Choice {
                value: choice.value,
                label: choice.label,
                description: choice.description,
            }
        }
    }

    impl From<Port> for crate::port::Port {
        fn from(port: Port) -> Self {
            crate::port::Port {
                key: port.key,
                kind: port.kind,
                nullable: port.nullable.unwrap_or(false),
                description: port.description,
                label: port.label,
                identifier: port.identifier,
                children: port.children.map(|children| ports(Some(children))),
                default: port.default,
                choices: port
                    .choices
                    .map(|choices| choices.into_iter().map(crate::port::Choice::from).collect()),
            }
        }
    }

    impl From<Definition> for super::Definition {
        fn from(definition: Definition) -> Self {
            super::Definition {
                key: definition.key,
                version: definition.version,
                name: definition.name,
                description: definition.description,
                kind: definition.kind,
                args: ports(definition.args),
                returns: ports(definition.returns),
                stateful: definition.stateful.unwrap_or(false),
                pure: definition.pure.unwrap_or(false),
                idempotent: definition.idempotent.unwrap_or(false),
                collections: definition.collections.unwrap_or_default(),
                dependencies: Vec::new(),
                locks: Vec::new(),
                states: Vec::new(),
            }
        }
    }
}
