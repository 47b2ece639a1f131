//! Ports and actions in the shape of rekuest's GraphQL `PortInput` and `DefinitionInput`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whether an action returns once or yields many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionKind {
    /// Yields exactly once.
    Function,
    /// Yields once per item, any number of times.
    Generator,
}

/// The kind of a port, as rekuest's `PortKind`; its wire name is the variant's in
/// SCREAMING_SNAKE_CASE ([`PortKind::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PortKind {
    /// A whole number (JSON integer).
    Int,
    /// Text (JSON string).
    String,
    /// A reference to an object that lives elsewhere, named by the port's identifier.
    Structure,
    /// A JSON list of values of one port (the single child).
    List,
    /// True or false.
    Bool,
    /// A string-keyed JSON object of values of one port (the single child).
    Dict,
    /// A floating-point number (any JSON number).
    Float,
    /// A date as text.
    Date,
    /// A value of any one of the child ports (the variants).
    Union,
    /// One of the port's fixed choices.
    Enum,
    /// A JSON object with one child port per field.
    Model,
    /// A reference to a value kept on the agent.
    MemoryStructure,
    /// A reference to another agent's interface; not checked.
    Interface,
    /// A physical quantity; not checked.
    Quantity,
}

impl PortKind {
    /// The wire name (`INT`, `LIST`, `MEMORY_STRUCTURE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::Int => "INT",
            PortKind::String => "STRING",
            PortKind::Structure => "STRUCTURE",
            PortKind::List => "LIST",
            PortKind::Bool => "BOOL",
            PortKind::Dict => "DICT",
            PortKind::Float => "FLOAT",
            PortKind::Date => "DATE",
            PortKind::Union => "UNION",
            PortKind::Enum => "ENUM",
            PortKind::Model => "MODEL",
            PortKind::MemoryStructure => "MEMORY_STRUCTURE",
            PortKind::Interface => "INTERFACE",
            PortKind::Quantity => "QUANTITY",
        }
    }
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One choice of an ENUM port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// The value sent on the wire.
    pub value: Value,
    /// What a UI shows.
    pub label: String,
    /// Optional longer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Choice {
    /// A choice whose wire value and label are both `name` (a Rust enum's variant).
    pub fn new(name: &str, description: Option<&str>) -> Self {
        Choice {
            value: Value::String(name.to_owned()),
            label: name.to_owned(),
            description: description.map(str::to_owned),
        }
    }
}

/// An arg or return port (rekuest's `ArgPortInput` / `ReturnPortInput`). Deserializing refuses
/// unknown fields, so that a typo in a self-description is not silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Arg name, or `return0`, `return1`, ... for returns; `...` for a LIST/DICT child.
    pub key: String,
    /// The value's kind.
    pub kind: PortKind,
    /// Whether null (or a missing arg) is accepted.
    #[serde(default)]
    pub nullable: bool,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Short UI label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Structure / model / enum identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Child ports: one for LIST and DICT, the fields of a MODEL, the variants of a UNION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<Port>>,
    /// Value used when the arg is missing or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The allowed values of an ENUM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<Choice>>,
}

impl Port {
    /// A non-nullable port of `kind` with an empty key (see [`Port::keyed`]).
    pub fn new(kind: PortKind) -> Self {
        Port {
            key: String::new(),
            kind,
            nullable: false,
            description: None,
            label: None,
            identifier: None,
            children: None,
            default: None,
            choices: None,
        }
    }

    /// A LIST or DICT port whose single child, keyed `...`, is `child`.
    pub fn container(kind: PortKind, child: Port) -> Self {
        Port {
            children: Some(vec![child.keyed("...")]),
            ..Port::new(kind)
        }
    }

    /// The port with its key set to `key`.
    pub fn keyed(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The port with its structure/model/enum identifier set to `identifier`.
    pub fn identified(mut self, identifier: impl Into<String>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// The port with its description set, if there is one (`None` keeps the current one).
    pub fn described(mut self, description: Option<&str>) -> Self {
        if let Some(description) = description {
            self.description = Some(description.to_owned());
        }
        self
    }

    /// The port with its label set, if there is one (`None` keeps the current one).
    pub fn labelled(mut self, label: Option<&str>) -> Self {
        if let Some(label) = label {
            self.label = Some(label.to_owned());
        }
        self
    }

    /// The port with a default value, which makes it nullable (a missing or null arg takes
    /// the default).
    pub fn defaulted(mut self, default: Value) -> Self {
        self.default = Some(default);
        self.nullable = true;
        self
    }

    /// The child ports (none for a port without children).
    pub fn children(&self) -> &[Port] {
        self.children.as_deref().unwrap_or(&[])
    }

    /// What the port accepts, for error messages: `INT`, `LIST of FLOAT`, `ENUM (A, B)`,
    /// `STRUCTURE @mikro/image`.
    pub fn expected(&self) -> String {
        match self.kind {
            PortKind::List | PortKind::Dict => match self.children().first() {
                Some(child) => format!("{} of {}", self.kind, child.expected()),
                None => self.kind.to_string(),
            },
            PortKind::Enum => {
                let values: Vec<String> = self
                    .choices
                    .iter()
                    .flatten()
                    .map(|choice| match &choice.value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                format!("ENUM ({})", values.join(", "))
            }
            PortKind::Model | PortKind::Structure | PortKind::MemoryStructure => {
                match &self.identifier {
                    Some(identifier) => format!("{} {identifier}", self.kind),
                    None => self.kind.to_string(),
                }
            }
            kind => kind.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_serialize_in_the_shape_of_port_input() {
        let port = Port::container(PortKind::List, Port::new(PortKind::Float))
            .keyed("xs")
            .described(Some("the values"))
            .labelled(None)
            .defaulted(json!([1.0]));
        assert_eq!(
            serde_json::to_value(&port).expect("serializes"),
            json!({"key": "xs", "kind": "LIST", "nullable": true, "description": "the values",
                "default": [1.0],
                "children": [{"key": "...", "kind": "FLOAT", "nullable": false}]})
        );
        let back: Port =
            serde_json::from_value(serde_json::to_value(&port).expect("JSON")).expect("reads back");
        assert_eq!(back, port);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let typo = json!({"key": "a", "kind": "INT", "nulable": true});
        let error = serde_json::from_value::<Port>(typo).expect_err("a typo");
        assert!(
            error.to_string().contains("unknown field `nulable`"),
            "{error}"
        );
    }

    #[test]
    fn expected_names_nested_kinds_choices_and_identifiers() {
        let int = Port::new(PortKind::Int);
        let list = Port::container(PortKind::List, Port::container(PortKind::Dict, int));
        assert_eq!(list.expected(), "LIST of DICT of INT");
        let case = Port {
            choices: Some(vec![Choice::new("Upper", None), Choice::new("Lower", None)]),
            ..Port::new(PortKind::Enum)
        };
        assert_eq!(case.expected(), "ENUM (Upper, Lower)");
        let image = Port::new(PortKind::Structure).identified("@mikro/image");
        assert_eq!(image.expected(), "STRUCTURE @mikro/image");
        let shelved = Port::new(PortKind::MemoryStructure).identified("@rekuest-host/shelved");
        assert_eq!(shelved.expected(), "MEMORY_STRUCTURE @rekuest-host/shelved");
        assert_eq!(Port::new(PortKind::Model).expected(), "MODEL");
    }
}
