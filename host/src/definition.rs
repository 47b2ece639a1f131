//! Action definitions in the shape of rekuest's GraphQL `DefinitionInput`.
//!
//! A component describes itself with these (as JSON); the host validates them at load, registers
//! them with the server unchanged, and checks every task's args against them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most actions one component may describe.
pub const MAX_ACTIONS: usize = 1_000;
/// Deepest port nesting accepted in a definition (LIST of MODEL of ...).
pub const MAX_PORT_DEPTH: usize = 16;

/// Whether an action returns once or yields many times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionKind {
    /// Yields exactly once.
    Function,
    /// Yields any number of times.
    Generator,
}

/// The kind of a port, as rekuest's `PortKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum PortKind {
    Int,
    String,
    Structure,
    List,
    Bool,
    Dict,
    Float,
    Date,
    Union,
    Enum,
    Model,
    MemoryStructure,
    Interface,
    Quantity,
}

impl PortKind {
    /// The wire name (`INT`, `LIST`, ...).
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

impl std::fmt::Display for PortKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// An arg or return port (`ArgPortInput` / `ReturnPortInput`).
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
    fn children(&self) -> &[Port] {
        self.children.as_deref().unwrap_or(&[])
    }
}

/// One action (`DefinitionInput`).
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
    /// Input ports.
    #[serde(default)]
    pub args: Vec<Port>,
    /// Output ports, keyed `return0`, `return1`, ...
    #[serde(default)]
    pub returns: Vec<Port>,
    /// Whether the action keeps state between calls.
    #[serde(default)]
    pub stateful: bool,
    /// Same args always give the same result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pure: bool,
    /// Safe to run twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
    /// UI groups.
    #[serde(default)]
    pub collections: Vec<String>,
}

/// Why a component's self-description was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// Not the JSON shape of a list of `DefinitionInput`.
    #[error("self-description is not a JSON list of action definitions: {0}")]
    Malformed(serde_json::Error),
    /// Parsed but inconsistent.
    #[error("action '{action}': {reason}")]
    Invalid {
        /// The offending action's key.
        action: String,
        /// What is wrong.
        reason: String,
    },
    /// No actions, too many, or duplicated keys.
    #[error("{0}")]
    Set(String),
}

/// Parses and checks a component's self-description.
pub fn parse_definitions(json: &str) -> Result<Vec<Definition>, DefinitionError> {
    let definitions: Vec<Definition> =
        serde_json::from_str(json).map_err(DefinitionError::Malformed)?;
    if definitions.is_empty() {
        return Err(DefinitionError::Set(
            "the component describes no actions".into(),
        ));
    }
    if definitions.len() > MAX_ACTIONS {
        return Err(DefinitionError::Set(format!(
            "the component describes {} actions; at most {MAX_ACTIONS} are allowed",
            definitions.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for definition in &definitions {
        if !seen.insert(definition.key.as_str()) {
            return Err(DefinitionError::Set(format!(
                "action key '{}' is described twice",
                definition.key
            )));
        }
        check_definition(definition).map_err(|reason| DefinitionError::Invalid {
            action: definition.key.clone(),
            reason,
        })?;
    }
    Ok(definitions)
}

fn check_definition(definition: &Definition) -> Result<(), String> {
    if definition.key.is_empty() || definition.key.len() > 256 {
        return Err("the key must be 1 to 256 characters".into());
    }
    if definition.name.is_empty() {
        return Err("the name is empty".into());
    }
    check_port_keys(&definition.args, "arg")?;
    check_port_keys(&definition.returns, "return")?;
    for port in definition.args.iter().chain(&definition.returns) {
        check_port(port, 1)?;
    }
    Ok(())
}

fn check_port_keys(ports: &[Port], what: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for port in ports {
        if port.key.is_empty() {
            return Err(format!("an {what} port has an empty key"));
        }
        if !seen.insert(port.key.as_str()) {
            return Err(format!("{what} port '{}' appears twice", port.key));
        }
    }
    Ok(())
}

fn check_port(port: &Port, depth: usize) -> Result<(), String> {
    if depth > MAX_PORT_DEPTH {
        return Err(format!(
            "port '{}' nests deeper than {MAX_PORT_DEPTH} levels",
            port.key
        ));
    }
    let children = port.children();
    match port.kind {
        PortKind::List | PortKind::Dict if children.len() != 1 => {
            return Err(format!(
                "{} port '{}' needs exactly one child port, has {}",
                port.kind,
                port.key,
                children.len()
            ));
        }
        PortKind::Union | PortKind::Model if children.is_empty() => {
            return Err(format!("{} port '{}' has no children", port.kind, port.key));
        }
        PortKind::Structure if port.identifier.as_deref().is_none_or(str::is_empty) => {
            return Err(format!("STRUCTURE port '{}' has no identifier", port.key));
        }
        PortKind::Enum if port.choices.as_deref().is_none_or(<[Choice]>::is_empty) => {
            return Err(format!("ENUM port '{}' has no choices", port.key));
        }
        _ => {}
    }
    if port.kind == PortKind::Model {
        check_port_keys(children, "model field")?;
    }
    children
        .iter()
        .try_for_each(|child| check_port(child, depth + 1))
}

/// An argument that does not fit its port.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("argument '{path}': {problem}")]
pub struct ArgError {
    /// Where: `a`, `points[2].x`, `tags["red"]`.
    pub path: String,
    /// What is wrong, naming the expected kind.
    pub problem: String,
}

impl Definition {
    /// Checks `args` against the arg ports and fills in defaults of missing or null args.
    pub fn prepare_args(
        &self,
        mut args: serde_json::Map<String, Value>,
    ) -> Result<serde_json::Map<String, Value>, ArgError> {
        for port in &self.args {
            let value = args.get(&port.key).filter(|value| !value.is_null());
            match (value, &port.default) {
                (Some(value), _) => check_value(port, value, &port.key)?,
                (None, Some(default)) => {
                    args.insert(port.key.clone(), default.clone());
                }
                (None, None) if port.nullable => {}
                (None, None) => {
                    return Err(ArgError {
                        path: port.key.clone(),
                        problem: format!("missing; expected {}", expected(port)),
                    });
                }
            }
        }
        Ok(args)
    }
}

/// Describes what a port accepts, e.g. `INT`, `LIST of FLOAT`, `ENUM (RED, GREEN)`.
pub fn expected(port: &Port) -> String {
    match port.kind {
        PortKind::List | PortKind::Dict => match port.children().first() {
            Some(child) => format!("{} of {}", port.kind, expected(child)),
            None => port.kind.to_string(),
        },
        PortKind::Enum => {
            let values: Vec<String> = port
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
        PortKind::Structure | PortKind::Model => match &port.identifier {
            Some(identifier) => format!("{} {identifier}", port.kind),
            None => port.kind.to_string(),
        },
        kind => kind.to_string(),
    }
}

/// Names a JSON value's type for error messages, with a short excerpt.
fn describe_value(value: &Value) -> String {
    let excerpt = |text: String| {
        if text.chars().count() > 40 {
            format!("{}…", text.chars().take(40).collect::<String>())
        } else {
            text
        }
    };
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => format!("string {}", excerpt(format!("{text:?}"))),
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(_) => "an object".into(),
    }
}

fn check_value(port: &Port, value: &Value, path: &str) -> Result<(), ArgError> {
    let mismatch = || ArgError {
        path: path.to_string(),
        problem: format!("expected {}, got {}", expected(port), describe_value(value)),
    };
    if value.is_null() {
        return if port.nullable {
            Ok(())
        } else {
            Err(mismatch())
        };
    }
    let children = port.children();
    match port.kind {
        PortKind::Int if value.is_i64() || value.is_u64() => Ok(()),
        PortKind::Float if value.is_number() => Ok(()),
        PortKind::String | PortKind::Date if value.is_string() => Ok(()),
        PortKind::Bool if value.is_boolean() => Ok(()),
        PortKind::Structure | PortKind::MemoryStructure
            if value.is_string() || value.is_number() =>
        {
            Ok(())
        }
        PortKind::Enum => {
            let known = port
                .choices
                .iter()
                .flatten()
                .any(|choice| &choice.value == value);
            if known { Ok(()) } else { Err(mismatch()) }
        }
        PortKind::List => match (value, children.first()) {
            (Value::Array(items), Some(child)) => {
                items.iter().enumerate().try_for_each(|(index, item)| {
                    check_value(child, item, &format!("{path}[{index}]"))
                })
            }
            _ => Err(mismatch()),
        },
        PortKind::Dict => match (value, children.first()) {
            (Value::Object(entries), Some(child)) => entries
                .iter()
                .try_for_each(|(key, item)| check_value(child, item, &format!("{path}[{key:?}]"))),
            _ => Err(mismatch()),
        },
        PortKind::Model => match value {
            Value::Object(fields) => children.iter().try_for_each(|field| {
                let field_path = format!("{path}.{}", field.key);
                match fields.get(&field.key).filter(|value| !value.is_null()) {
                    Some(item) => check_value(field, item, &field_path),
                    None if field.nullable || field.default.is_some() => Ok(()),
                    None => Err(ArgError {
                        path: field_path,
                        problem: format!("missing; expected {}", expected(field)),
                    }),
                }
            }),
            _ => Err(mismatch()),
        },
        PortKind::Union => {
            if children
                .iter()
                .any(|child| check_value(child, value, path).is_ok())
            {
                Ok(())
            } else {
                Err(mismatch())
            }
        }
        PortKind::Interface | PortKind::Quantity => Ok(()),
        _ => Err(mismatch()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(args: Value) -> Definition {
        serde_json::from_value(json!({
            "key": "f", "version": "1", "name": "F", "kind": "FUNCTION",
            "args": args, "returns": []
        }))
        .expect("valid definition")
    }

    fn args(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn fills_defaults_and_accepts_matching_args() {
        let def = definition(json!([
            {"key": "a", "kind": "INT", "nullable": false},
            {"key": "greeting", "kind": "STRING", "nullable": true, "default": "Hello"},
        ]));
        let prepared = def.prepare_args(args(json!({"a": 3}))).expect("valid");
        assert_eq!(prepared["greeting"], json!("Hello"));
    }

    #[test]
    fn names_the_port_and_expected_kind() {
        let def = definition(json!([{"key": "a", "kind": "INT", "nullable": false}]));
        let error = def
            .prepare_args(args(json!({"a": "x"})))
            .expect_err("wrong kind");
        assert_eq!(
            error.to_string(),
            "argument 'a': expected INT, got string \"x\""
        );
        let error = def.prepare_args(args(json!({}))).expect_err("missing");
        assert_eq!(error.to_string(), "argument 'a': missing; expected INT");
        let error = def
            .prepare_args(args(json!({"a": 1.5})))
            .expect_err("fraction");
        assert!(error.to_string().contains("expected INT, got number 1.5"));
    }

    #[test]
    fn nested_paths_point_at_the_bad_item() {
        let def = definition(json!([{"key": "points", "kind": "LIST", "nullable": false,
            "children": [{"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Point",
                "children": [{"key": "x", "kind": "FLOAT", "nullable": false}]}]}]));
        let error = def
            .prepare_args(args(json!({"points": [{"x": 1}, {"x": "no"}]})))
            .expect_err("bad item");
        assert_eq!(error.path, "points[1].x");
    }

    #[test]
    fn enums_accept_only_their_choices() {
        let def = definition(json!([{"key": "case", "kind": "ENUM", "nullable": false,
            "choices": [{"value": "UPPER", "label": "UPPER"}, {"value": "LOWER", "label": "LOWER"}]}]));
        assert!(def.prepare_args(args(json!({"case": "UPPER"}))).is_ok());
        let error = def
            .prepare_args(args(json!({"case": "TITLE"})))
            .expect_err("not a choice");
        assert!(error.to_string().contains("expected ENUM (UPPER, LOWER)"));
    }

    #[test]
    fn refuses_inconsistent_descriptions() {
        let list_without_child = r#"[{"key":"f","version":"1","name":"F","kind":"FUNCTION",
            "args":[{"key":"xs","kind":"LIST","nullable":false}],"returns":[]}]"#;
        let error = parse_definitions(list_without_child).expect_err("invalid");
        assert!(
            error.to_string().contains("needs exactly one child"),
            "{error}"
        );
        assert!(parse_definitions("[]").is_err());
        assert!(parse_definitions("{\"not\": \"a list\"}").is_err());
        let unknown_kind = r#"[{"key":"f","version":"1","name":"F","kind":"FUNCTION",
            "args":[{"key":"x","kind":"BLOB","nullable":false}],"returns":[]}]"#;
        assert!(parse_definitions(unknown_kind).is_err());
    }
}
