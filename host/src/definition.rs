//! Action definitions in the shape of rekuest's GraphQL `DefinitionInput`: what the host does
//! with the model it shares with the guest SDK (`rekuest-definition`).
//!
//! A component describes itself with a JSON list of [`Definition`]s; the host checks it
//! against the [`DefinitionCaps`] at load ([`parse_definitions`]), registers it in the forms
//! the server takes ([`DefinitionInput`], [`dependency_input`], [`state_input`]), and checks
//! every task's args against it ([`prepare_args`]).

use serde::Serialize;
use serde_json::Value;

use rekuest_definition::describe_value;
pub use rekuest_definition::{
    ActionKind, Choice, Definition, Dependency, Port, PortError, PortKind, Side, StateSchema,
};

use crate::envelope;

/// The bounds a component's self-description must keep ([`parse_definitions`] checks them):
/// they bound the work of checking it at load and of checking every task's args against it,
/// and keep its texts within the server's columns. Lengths are in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefinitionCaps {
    /// Most actions one component may describe.
    pub actions: usize,
    /// Deepest port nesting (LIST of MODEL of ...).
    pub port_depth: usize,
    /// Most ports one action may describe, args and returns, nested ones included. With
    /// `choices` this bounds the cost of checking one arg value: at most this many ports (and
    /// that many choices) per value, however the ports nest.
    pub ports: usize,
    /// Most variants one UNION port may have.
    pub union_width: usize,
    /// Most ENUM choices one action may describe, over all its ENUM ports.
    pub choices: usize,
    /// Longest action key (as the server stores it); also the longest key or hash a
    /// dependency slot demands.
    pub action_key: usize,
    /// Longest port key.
    pub port_key: usize,
    /// Longest dotted path of port keys (`points.....x`).
    pub port_path: usize,
    /// Longest version.
    pub version: usize,
    /// Longest action name, port label, choice label or collection.
    pub name: usize,
    /// Longest structure/model identifier, and lock, state or dependency key.
    pub identifier: usize,
    /// Most dependency slots one action may declare.
    pub dependencies: usize,
    /// Most locks, and most states, one action may declare.
    pub keeps: usize,
}

impl DefinitionCaps {
    /// The caps every component is held to.
    pub const DEFAULT: DefinitionCaps = DefinitionCaps {
        actions: 1_000,
        port_depth: 16,
        ports: 256,
        union_width: 32,
        choices: 1_024,
        action_key: 2_000,
        port_key: 255,
        port_path: 500,
        version: 100,
        name: 1_000,
        identifier: 255,
        dependencies: 32,
        keeps: 16,
    };
}

/// The key of the element port of a LIST or DICT (the SDKs' convention); such element ports,
/// and the variants of a UNION, may also be keyed by a decimal index (`0`, `1`). Any other port
/// key is an identifier (see [`is_identifier`]).
pub const ELEMENT_PORT_KEY: &str = "...";

/// A definition as the server stores it (`DefinitionInput`): all but its dependency slots,
/// locks and states, which are registered beside it. What `implementAgent` sends, what the
/// definition hash covers and what `inspect --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionInput<'a> {
    key: &'a str,
    version: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    kind: ActionKind,
    args: &'a [Port],
    returns: &'a [Port],
    stateful: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    idempotent: bool,
    collections: &'a [String],
}

impl<'a> From<&'a Definition> for DefinitionInput<'a> {
    fn from(definition: &'a Definition) -> Self {
        DefinitionInput {
            key: &definition.key,
            version: &definition.version,
            name: &definition.name,
            description: definition.description.as_deref(),
            kind: definition.kind,
            args: &definition.args,
            returns: &definition.returns,
            stateful: definition.stateful,
            pure: definition.pure,
            idempotent: definition.idempotent,
            collections: &definition.collections,
        }
    }
}

/// A dependency slot as `implementAgent` takes it (`DependencyInput`).
pub fn dependency_input(dependency: &Dependency) -> Value {
    let demand = match (&dependency.hash, &dependency.action) {
        (Some(hash), _) => serde_json::json!({ "hash": hash }),
        (None, action) => serde_json::json!({ "key": action }),
    };
    serde_json::json!({
        "key": dependency.key,
        "optional": dependency.optional,
        "autoResolvable": true,
        "actionDependencies": [{
            "key": dependency.key,
            "optional": dependency.optional,
            "demand": demand,
        }],
    })
}

/// An agent state as `implementAgent` takes it (`StateImplementationInput`).
pub fn state_input(state: &StateSchema) -> Value {
    serde_json::json!({
        "interface": state.key,
        "definition": {"name": state.name, "ports": state.ports},
    })
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
    let caps = &DefinitionCaps::DEFAULT;
    if definitions.len() > caps.actions {
        return Err(DefinitionError::Set(format!(
            "the component describes {} actions; at most {} are allowed",
            definitions.len(),
            caps.actions
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for definition in &definitions {
        if !seen.insert(definition.key.as_str()) {
            return Err(DefinitionError::Set(format!(
                "action key '{}' is described twice",
                cut(&definition.key)
            )));
        }
        check_definition(caps, definition)
            .and_then(|()| check_texts(caps, definition))
            .map_err(|reason| DefinitionError::Invalid {
                action: cut(&definition.key),
                reason,
            })?;
    }
    Ok(definitions)
}

/// Whether `key` is an identifier: an ASCII letter or `_`, then ASCII letters, digits and `_`
/// (what callers use as argument names, e.g. Python keyword arguments).
pub fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// At most 40 characters of guest text for an error message, control characters escaped.
fn cut(text: &str) -> String {
    if text.chars().count() > 40 {
        let start: String = text.chars().take(40).collect();
        format!("{}…", crate::text::OneLine(&start))
    } else {
        crate::text::OneLine(text).to_string()
    }
}

/// [`cut`], quoted.
fn excerpt(text: &str) -> String {
    format!("\"{}\"", cut(text))
}

/// Checks the texts of a definition: keys are identifiers of bounded length, names, versions
/// and identifiers fit the server's columns, and no text carries control characters (only
/// names, labels and descriptions may hold newlines and tabs).
fn check_texts(caps: &DefinitionCaps, definition: &Definition) -> Result<(), String> {
    if !is_identifier(&definition.key) {
        return Err(format!(
            "the action key {} is not an identifier (an ASCII letter or '_', then letters, \
             digits and '_')",
            excerpt(&definition.key)
        ));
    }
    check_length("the action key", &definition.key, caps.action_key)?;
    check_line("the version", &definition.version, caps.version)?;
    check_prose("the name", &definition.name, Some(caps.name))?;
    if let Some(description) = &definition.description {
        check_prose("the description", description, None)?;
    }
    for collection in &definition.collections {
        check_line("a collection", collection, caps.name)?;
    }
    for port in definition.args.iter().chain(&definition.returns) {
        check_port_texts(caps, port, &port.key, false)?;
    }
    Ok(())
}

/// Checks one port's texts and its children's; `path` is its dotted key path, `element`
/// whether it is the element port of a LIST, DICT or UNION (which may be keyed `...`).
fn check_port_texts(
    caps: &DefinitionCaps,
    port: &Port,
    path: &str,
    element: bool,
) -> Result<(), String> {
    let element_key = || {
        port.key == ELEMENT_PORT_KEY
            || !port.key.is_empty() && port.key.bytes().all(|byte| byte.is_ascii_digit())
    };
    if !(is_identifier(&port.key) || element && element_key()) {
        return Err(format!(
            "the port key {} is not an identifier (an ASCII letter or '_', then letters, \
             digits and '_'{})",
            excerpt(&port.key),
            if element {
                "; or '...' or an index for an element port"
            } else {
                ""
            }
        ));
    }
    check_length("a port key", &port.key, caps.port_key)?;
    check_length("a port's dotted key path", path, caps.port_path)?;
    let what = |field: &str| format!("the {field} of port '{path}'");
    if let Some(description) = &port.description {
        check_prose(&what("description"), description, None)?;
    }
    if let Some(label) = &port.label {
        check_prose(&what("label"), label, Some(caps.name))?;
    }
    if let Some(identifier) = &port.identifier {
        check_line(&what("identifier"), identifier, caps.identifier)?;
    }
    for choice in port.choices.iter().flatten() {
        check_prose(&what("choice label"), &choice.label, Some(caps.name))?;
        if let Some(description) = &choice.description {
            check_prose(&what("choice description"), description, None)?;
        }
    }
    let element = matches!(port.kind, PortKind::List | PortKind::Dict | PortKind::Union);
    for child in port.children() {
        // The path is only built while it can still be within its cap.
        let child_path = if path.len() <= caps.port_path {
            format!("{path}.{}", child.key)
        } else {
            path.to_string()
        };
        check_port_texts(caps, child, &child_path, element)?;
    }
    Ok(())
}

fn check_length(what: &str, text: &str, limit: usize) -> Result<(), String> {
    let length = text.chars().count();
    if length > limit {
        return Err(format!(
            "{what} is {length} characters long; at most {limit} are allowed"
        ));
    }
    Ok(())
}

/// A one-line text (version, identifier): bounded, no control characters at all.
fn check_line(what: &str, text: &str, limit: usize) -> Result<(), String> {
    check_length(what, text, limit)?;
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{what} {} contains the control character {c:?}",
            excerpt(text)
        )),
        None => Ok(()),
    }
}

/// Prose (name, label, description): no control characters other than newline and tab.
fn check_prose(what: &str, text: &str, limit: Option<usize>) -> Result<(), String> {
    if let Some(limit) = limit {
        check_length(what, text, limit)?;
    }
    match text
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        Some(c) => Err(format!(
            "{what} contains the control character {c:?} (only newline and tab are allowed)"
        )),
        None => Ok(()),
    }
}

fn check_definition(caps: &DefinitionCaps, definition: &Definition) -> Result<(), String> {
    if definition.name.is_empty() {
        return Err("the name is empty".into());
    }
    check_port_keys(&definition.args, "arg")?;
    check_port_keys(&definition.returns, "return")?;
    for port in definition.args.iter().chain(&definition.returns) {
        check_port(caps, port, 1)?;
    }
    check_dependencies(caps, &definition.dependencies)?;
    check_keeps(caps, definition)?;
    let mut size = DescriptionSize::default();
    for port in definition.args.iter().chain(&definition.returns) {
        size.add(port);
    }
    if size.ports > caps.ports {
        return Err(format!(
            "it has {} ports (nested ones included); at most {} are allowed",
            size.ports, caps.ports
        ));
    }
    if size.choices > caps.choices {
        return Err(format!(
            "its ENUM ports have {} choices in all; at most {} are allowed",
            size.choices, caps.choices
        ));
    }
    Ok(())
}

/// Locks and states: few, unique identifiers; state ports checked like any port.
fn check_keeps(caps: &DefinitionCaps, definition: &Definition) -> Result<(), String> {
    let keys = definition
        .locks
        .iter()
        .map(|lock| ("lock", lock))
        .chain(definition.states.iter().map(|state| ("state", &state.key)));
    if definition.locks.len() > caps.keeps || definition.states.len() > caps.keeps {
        return Err(format!(
            "it declares {} locks and {} states; at most {} of each are allowed",
            definition.locks.len(),
            definition.states.len(),
            caps.keeps
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (what, key) in keys {
        if !is_identifier(key) || key.len() > caps.identifier {
            return Err(format!(
                "the {what} key {} is not an identifier",
                excerpt(key)
            ));
        }
        if !seen.insert((what, key.as_str())) {
            return Err(format!("the {what} '{key}' is declared twice"));
        }
    }
    for state in &definition.states {
        check_port_keys(&state.ports, "state")?;
        for port in &state.ports {
            check_port(caps, port, 1)?;
        }
    }
    Ok(())
}

/// Dependency slots: unique identifiers, each demanding exactly one of a key or a hash.
fn check_dependencies(caps: &DefinitionCaps, dependencies: &[Dependency]) -> Result<(), String> {
    if dependencies.len() > caps.dependencies {
        return Err(format!(
            "it declares {} dependencies; at most {} are allowed",
            dependencies.len(),
            caps.dependencies
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for dependency in dependencies {
        if !is_identifier(&dependency.key) || dependency.key.len() > caps.identifier {
            return Err(format!(
                "the dependency key {} is not an identifier",
                excerpt(&dependency.key)
            ));
        }
        if !seen.insert(dependency.key.as_str()) {
            return Err(format!(
                "the dependency '{}' is declared twice",
                dependency.key
            ));
        }
        let demanded = [&dependency.action, &dependency.hash]
            .into_iter()
            .flatten()
            .filter(|text| !text.is_empty() && text.len() <= caps.action_key)
            .count();
        if demanded != 1 {
            return Err(format!(
                "the dependency '{}' must name exactly one of `action` (a key) or `hash`",
                dependency.key
            ));
        }
    }
    Ok(())
}

/// Ports and ENUM choices of an action, counted over every nesting level.
#[derive(Default)]
struct DescriptionSize {
    ports: usize,
    choices: usize,
}

impl DescriptionSize {
    /// Counts `port` and everything below it (depth is already bounded by `check_port`).
    fn add(&mut self, port: &Port) {
        self.ports += 1;
        self.choices += port.choices.as_deref().map_or(0, <[Choice]>::len);
        for child in port.children() {
            self.add(child);
        }
    }
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

fn check_port(caps: &DefinitionCaps, port: &Port, depth: usize) -> Result<(), String> {
    if depth > caps.port_depth {
        return Err(format!(
            "port '{}' nests deeper than {} levels",
            port.key, caps.port_depth
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
        PortKind::Union if children.len() > caps.union_width => {
            return Err(format!(
                "UNION port '{}' has {} variants; at most {} are allowed",
                port.key,
                children.len(),
                caps.union_width
            ));
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
        .try_for_each(|child| check_port(caps, child, depth + 1))
}

/// Checks `args` against the arg ports, fills in defaults of missing or null args, and
/// puts the args in the form guests get: a structure sent in its envelope becomes its bare
/// reference, and the `__identifier` key the official client adds to models is dropped.
///
/// Costs O(value nodes × ports of the action) and allocates only to report a mismatch or
/// to open envelopes; see [`DefinitionCaps::ports`].
pub fn prepare_args(
    definition: &Definition,
    mut args: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, PortError> {
    for port in &definition.args {
        let value = args.get_mut(&port.key).filter(|value| !value.is_null());
        match (value, &port.default) {
            (Some(value), _) if fits(port, value) => normalize(port, value),
            (Some(value), _) => return Err(explain(port, value, port.key.clone())),
            (None, Some(default)) => {
                args.insert(port.key.clone(), default.clone());
            }
            (None, None) if port.nullable => {}
            (None, None) => {
                return Err(PortError {
                    side: Side::Argument,
                    path: port.key.clone(),
                    problem: format!("missing; expected {}", port.expected()),
                });
            }
        }
    }
    Ok(args)
}

/// Whether `value` fits `port` (the fast check; [`explain`] says why not). A UNION value may
/// come tagged with its variant, as the official client sends it (see [`envelope::tagged`]).
pub(crate) fn fits(port: &Port, value: &Value) -> bool {
    if value.is_null() {
        return port.nullable;
    }
    let children = port.children();
    match port.kind {
        PortKind::Int => value.is_i64() || value.is_u64(),
        PortKind::Float => value.is_number(),
        PortKind::String | PortKind::Date => value.is_string(),
        PortKind::Bool => value.is_boolean(),
        PortKind::Structure | PortKind::MemoryStructure => envelope::reference(port, value)
            .is_ok_and(|reference| reference.is_string() || reference.is_number()),
        PortKind::Enum => port
            .choices
            .iter()
            .flatten()
            .any(|choice| &choice.value == value),
        PortKind::List => match (value, children.first()) {
            (Value::Array(items), Some(child)) => items.iter().all(|item| fits(child, item)),
            _ => false,
        },
        PortKind::Dict => match (value, children.first()) {
            (Value::Object(entries), Some(child)) => entries.values().all(|item| fits(child, item)),
            _ => false,
        },
        PortKind::Model => match value {
            Value::Object(fields) => children.iter().all(|field| {
                match fields.get(&field.key).filter(|value| !value.is_null()) {
                    Some(item) => fits(field, item),
                    None => field.nullable || field.default.is_some(),
                }
            }),
            _ => false,
        },
        PortKind::Union => match envelope::tagged(value) {
            Some((variant, inner)) => children
                .get(variant)
                .is_some_and(|child| fits(child, inner)),
            None => children.iter().any(|child| fits(child, value)),
        },
        PortKind::Interface | PortKind::Quantity => true,
    }
}

/// Brings a value that [`fits`] `port` into the form guests get: envelopes opened to their
/// reference, the official client's `__identifier` key dropped from models. Touches nothing
/// in values of ports without structures or models.
fn normalize(port: &Port, value: &mut Value) {
    let children = port.children();
    match (port.kind, value) {
        (PortKind::Structure | PortKind::MemoryStructure, value) => {
            // It fits, so opening cannot fail.
            let _ = envelope::open(port, value);
        }
        (PortKind::List, Value::Array(items)) => {
            if let Some(child) = children.first().filter(|child| needs_normalizing(child)) {
                items.iter_mut().for_each(|item| normalize(child, item));
            }
        }
        (PortKind::Dict, Value::Object(entries)) => {
            if let Some(child) = children.first().filter(|child| needs_normalizing(child)) {
                entries.values_mut().for_each(|item| normalize(child, item));
            }
        }
        (PortKind::Model, Value::Object(fields)) => {
            if !children
                .iter()
                .any(|field| field.key == envelope::IDENTIFIER_KEY)
            {
                fields.remove(envelope::IDENTIFIER_KEY);
            }
            for field in children.iter().filter(|field| needs_normalizing(field)) {
                if let Some(item) = fields.get_mut(&field.key) {
                    normalize(field, item);
                }
            }
        }
        (PortKind::Union, value) => {
            // A tagged value names its variant; a bare one is taken as the first it fits.
            if let Some((variant, _)) = envelope::tagged(value) {
                *value = envelope::untag(value);
                if let Some(child) = children.get(variant) {
                    normalize(child, value);
                }
            } else if let Some(child) = children.iter().find(|child| fits(child, value)) {
                normalize(child, value);
            }
        }
        _ => {}
    }
}

/// Whether values of `port` may need [`normalize`] (it holds a structure, a model or a union).
fn needs_normalizing(port: &Port) -> bool {
    matches!(
        port.kind,
        PortKind::Structure | PortKind::MemoryStructure | PortKind::Model | PortKind::Union
    ) || port.children().iter().any(needs_normalizing)
}

/// Why `value` (at `path`) does not fit `port`: the innermost item that does not fit.
fn explain(port: &Port, value: &Value, path: String) -> PortError {
    let children = port.children();
    let inner = match (port.kind, value, children.first()) {
        (PortKind::List, Value::Array(items), Some(child)) => items
            .iter()
            .enumerate()
            .find(|(_, item)| !fits(child, item))
            .map(|(index, item)| explain(child, item, format!("{path}[{index}]"))),
        (PortKind::Dict, Value::Object(entries), Some(child)) => entries
            .iter()
            .find(|(_, item)| !fits(child, item))
            .map(|(key, item)| explain(child, item, format!("{path}[{key:?}]"))),
        (PortKind::Structure | PortKind::MemoryStructure, Value::Object(_), _) => {
            envelope::reference(port, value)
                .err()
                .map(|error| PortError {
                    side: Side::Argument,
                    path: path.clone(),
                    problem: format!("expected {}, got {error}", port.expected()),
                })
        }
        (PortKind::Union, value, _) if envelope::tagged(value).is_some() => envelope::tagged(value)
            .map(|(variant, inner)| match children.get(variant) {
                Some(child) => explain(child, inner, format!("{path}<{variant}>")),
                None => PortError {
                    side: Side::Argument,
                    path: path.clone(),
                    problem: format!(
                        "expected one of the {} variants of the UNION, got \"__use\": {variant}",
                        children.len()
                    ),
                },
            }),
        (PortKind::Model, Value::Object(fields), _) => children.iter().find_map(|field| {
            let field_path = format!("{path}.{}", field.key);
            match fields.get(&field.key).filter(|value| !value.is_null()) {
                Some(item) if !fits(field, item) => Some(explain(field, item, field_path)),
                None if !field.nullable && field.default.is_none() => Some(PortError {
                    side: Side::Argument,
                    path: field_path,
                    problem: format!("missing; expected {}", field.expected()),
                }),
                _ => None,
            }
        }),
        _ => None,
    };
    inner.unwrap_or_else(|| PortError {
        side: Side::Argument,
        problem: format!(
            "expected {}, got {}",
            port.expected(),
            describe_value(value)
        ),
        path,
    })
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
    fn the_definition_input_leaves_out_what_is_registered_beside_it() {
        let described = json!([{
            "key": "f", "version": "1", "name": "F", "kind": "GENERATOR", "pure": true,
            "collections": ["c"], "locks": ["stage"], "dependencies": [{"key": "g", "action": "g"}],
            "states": [{"key": "s", "name": "S", "ports": [{"key": "x", "kind": "INT"}]}],
            "args": [{"key": "a", "kind": "INT"}], "returns": [],
        }]);
        let parsed = parse_definitions(&described.to_string()).expect("valid");
        assert_eq!(
            serde_json::to_string(&DefinitionInput::from(&parsed[0])).expect("serializes"),
            r#"{"key":"f","version":"1","name":"F","kind":"GENERATOR","args":[{"key":"a","kind":"INT","nullable":false}],"returns":[],"stateful":false,"pure":true,"collections":["c"]}"#
        );
        // What a guest described reads back unchanged, declarations included.
        let again = serde_json::to_string(&parsed).expect("serializes");
        assert_eq!(parse_definitions(&again).expect("valid"), parsed);
    }

    #[test]
    fn dependencies_are_checked_and_kept_out_of_the_definition_sent() {
        let described = |dependencies: Value| {
            json!([{
                "key": "f", "version": "1", "name": "F", "kind": "FUNCTION",
                "args": [], "returns": [], "dependencies": dependencies,
            }])
            .to_string()
        };
        let parsed = parse_definitions(&described(json!([
            {"key": "add", "action": "add"},
            {"key": "adder", "hash": "abc", "optional": true},
        ])))
        .expect("valid dependencies");
        assert_eq!(parsed[0].dependencies.len(), 2);
        let sent = serde_json::to_value(DefinitionInput::from(&parsed[0])).expect("serializes");
        assert!(sent.get("dependencies").is_none(), "{sent}");
        assert_eq!(
            dependency_input(&parsed[0].dependencies[0])["actionDependencies"][0]["demand"],
            json!({"key": "add"})
        );
        for (bad, reason) in [
            (json!([{"key": "x"}]), "exactly one of `action`"),
            (
                json!([{"key": "x", "action": "a", "hash": "h"}]),
                "exactly one of `action`",
            ),
            (json!([{"key": "x y", "action": "a"}]), "not an identifier"),
            (
                json!([{"key": "x", "action": "a"}, {"key": "x", "action": "b"}]),
                "declared twice",
            ),
        ] {
            let error = parse_definitions(&described(bad)).expect_err("refused");
            assert!(error.to_string().contains(reason), "{error}");
        }
    }

    #[test]
    fn fills_defaults_and_accepts_matching_args() {
        let def = definition(json!([
            {"key": "a", "kind": "INT", "nullable": false},
            {"key": "greeting", "kind": "STRING", "nullable": true, "default": "Hello"},
        ]));
        let prepared = prepare_args(&def, args(json!({"a": 3}))).expect("valid");
        assert_eq!(prepared["greeting"], json!("Hello"));
    }

    #[test]
    fn names_the_port_and_expected_kind() {
        let def = definition(json!([{"key": "a", "kind": "INT", "nullable": false}]));
        let error = prepare_args(&def, args(json!({"a": "x"}))).expect_err("wrong kind");
        assert_eq!(
            error.to_string(),
            "argument 'a': expected INT, got string \"x\""
        );
        let error = prepare_args(&def, args(json!({}))).expect_err("missing");
        assert_eq!(error.to_string(), "argument 'a': missing; expected INT");
        let error = prepare_args(&def, args(json!({"a": 1.5}))).expect_err("fraction");
        assert!(error.to_string().contains("expected INT, got number 1.5"));
    }

    #[test]
    fn union_args_come_tagged_or_bare_and_reach_guests_bare() {
        let def = definition(json!([{"key": "u", "kind": "UNION", "nullable": false,
            "children": [{"key": "0", "kind": "INT", "nullable": false},
                {"key": "1", "kind": "MODEL", "nullable": false, "identifier": "P",
                    "children": [{"key": "x", "kind": "FLOAT", "nullable": false}]}]}]));
        let prepared = prepare_args(
            &def,
            args(json!({"u": {"__use": 1, "__value":
                {"__identifier": "P", "x": 1.5}}})),
        )
        .expect("tagged");
        assert_eq!(prepared["u"], json!({"x": 1.5}));
        let prepared = prepare_args(&def, args(json!({"u": 3}))).expect("bare");
        assert_eq!(prepared["u"], json!(3));
        let prepared =
            prepare_args(&def, args(json!({"u": {"__use": 0, "__value": 4}}))).expect("tagged int");
        assert_eq!(prepared["u"], json!(4));
        let error = prepare_args(&def, args(json!({"u": {"__use": 0, "__value": "x"}})))
            .expect_err("wrong variant value");
        assert_eq!(
            error.to_string(),
            "argument 'u<0>': expected INT, got string \"x\""
        );
        let error = prepare_args(&def, args(json!({"u": {"__use": 5, "__value": 1}})))
            .expect_err("no such variant");
        assert_eq!(
            error.to_string(),
            "argument 'u': expected one of the 2 variants of the UNION, got \"__use\": 5"
        );
    }

    #[test]
    fn nested_paths_point_at_the_bad_item() {
        let def = definition(json!([{"key": "points", "kind": "LIST", "nullable": false,
            "children": [{"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Point",
                "children": [{"key": "x", "kind": "FLOAT", "nullable": false}]}]}]));
        let error = prepare_args(&def, args(json!({"points": [{"x": 1}, {"x": "no"}]})))
            .expect_err("bad item");
        assert_eq!(error.path, "points[1].x");
    }

    #[test]
    fn enums_accept_only_their_choices() {
        let def = definition(json!([{"key": "case", "kind": "ENUM", "nullable": false,
            "choices": [{"value": "UPPER", "label": "UPPER"}, {"value": "LOWER", "label": "LOWER"}]}]));
        assert!(prepare_args(&def, args(json!({"case": "UPPER"}))).is_ok());
        let error = prepare_args(&def, args(json!({"case": "TITLE"}))).expect_err("not a choice");
        assert!(error.to_string().contains("expected ENUM (UPPER, LOWER)"));
    }

    fn image_port(key: &str) -> Value {
        json!({"key": key, "kind": "STRUCTURE", "nullable": false, "identifier": "@mikro/image"})
    }

    fn image_envelope(reference: &str) -> Value {
        json!({"__identifier": "@mikro/image", "object": reference})
    }

    #[test]
    fn structures_in_envelopes_reach_guests_as_bare_references() {
        let def = definition(json!([
            image_port("image"),
            {"key": "named", "kind": "DICT", "nullable": false, "children": [image_port("...")]},
            {"key": "labelled", "kind": "LIST", "nullable": false, "children": [
                {"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Labelled",
                 "children": [image_port("image"), {"key": "label", "kind": "STRING"}]}]},
            {"key": "either", "kind": "UNION", "nullable": false,
             "children": [{"key": "0", "kind": "INT"}, image_port("1")]},
        ]));
        let prepared = prepare_args(
            &def,
            args(json!({
                "image": image_envelope("image:1"),
                "named": {"a": image_envelope("image:2"), "b": "image:3"},
                "labelled": [{"__identifier": "Labelled", "image": image_envelope("image:4"),
                    "label": "x"}],
                "either": image_envelope("image:5"),
            })),
        )
        .expect("the official client's form");
        assert_eq!(
            Value::Object(prepared),
            json!({
                "image": "image:1",
                "named": {"a": "image:2", "b": "image:3"},
                "labelled": [{"image": "image:4", "label": "x"}],
                "either": "image:5",
            })
        );
    }

    #[test]
    fn envelopes_of_other_structures_are_refused_by_path() {
        let def = definition(json!([
            {"key": "named", "kind": "DICT", "nullable": false, "children": [image_port("...")]},
        ]));
        let refused = |value: Value| {
            prepare_args(&def, args(json!({ "named": {"a": value} })))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused(json!({"__identifier": "@mikro/video", "object": "1"})),
            "argument 'named[\"a\"]': expected STRUCTURE @mikro/image, got a reference to \
             @mikro/video"
        );
        assert_eq!(
            refused(json!({"id": "1"})),
            "argument 'named[\"a\"]': expected STRUCTURE @mikro/image, got an object without \
             an \"object\" key"
        );
        assert_eq!(
            refused(json!(true)),
            "argument 'named[\"a\"]': expected STRUCTURE @mikro/image, got boolean true"
        );
    }

    #[test]
    fn a_model_field_named_like_the_identifier_key_is_kept() {
        let def = definition(json!([{"key": "m", "kind": "MODEL", "nullable": false,
            "identifier": "M", "children": [{"key": "__identifier", "kind": "STRING"}]}]));
        let prepared =
            prepare_args(&def, args(json!({"m": {"__identifier": "kept"}}))).expect("valid");
        assert_eq!(prepared["m"], json!({"__identifier": "kept"}));
    }

    /// `add` as the local server lists it after the Python agent (rekuest-next 2.3.1)
    /// registered it.
    fn python_agent_add() -> Value {
        let port = |key: &str, end: &str| {
            json!({
                "default": null, "description": null, "effects": [], "key": key, "kind": "INT",
                "label": null, "nullable": false, end: null, "validators": [], "widget": null
            })
        };
        json!({
            "args": [port("a", "requires"), port("b", "requires")],
            "collections": [], "description": "Add two numbers.", "isDev": false,
            "isTestFor": [], "key": "add", "kind": "FUNCTION", "name": "Add", "portGroups": [],
            "returns": [port("return0", "provides")], "stateful": false, "version": "1"
        })
    }

    #[test]
    fn definitions_from_a_server_may_carry_fields_this_host_does_not_model() {
        let add = Definition::from_server(python_agent_add()).expect("tolerated");
        assert_eq!(add.key, "add");
        assert_eq!(add.kind, ActionKind::Function);
        assert_eq!(add.description.as_deref(), Some("Add two numbers."));
        let keys: Vec<&str> = add.args.iter().map(|port| port.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(add.returns[0].key, "return0");
        assert!(
            add.args
                .iter()
                .all(|port| port.kind == PortKind::Int && !port.nullable)
        );
        assert_eq!(
            prepare_args(&add, args(json!({"a": 2, "b": 3}))).expect("valid"),
            args(json!({"a": 2, "b": 3}))
        );
        let error = prepare_args(&add, args(json!({"a": "x", "b": 3}))).expect_err("wrong kind");
        assert_eq!(error.path, "a");

        // Unknown fields anywhere (choices and children too); null lists and flags.
        let nested = Definition::from_server(json!({
            "key": "pick", "version": "1", "name": "Pick", "kind": "GENERATOR",
            "collections": null, "stateful": null, "somethingNew": {"x": 1},
            "args": [{"key": "case", "kind": "ENUM", "nullable": null, "assignWidget": null,
                "choices": [{"value": "UPPER", "label": "Upper", "image": null}]},
                {"key": "xs", "kind": "LIST", "children": [{"key": "...", "kind": "FLOAT",
                    "validators": [{"function": "(x) => x > 0"}]}]}],
            "returns": null
        }))
        .expect("tolerated");
        assert_eq!(nested.kind, ActionKind::Generator);
        assert!(nested.collections.is_empty() && nested.returns.is_empty());
        assert!(!nested.args[0].nullable);
        assert_eq!(nested.args[0].expected(), "ENUM (UPPER)");
        assert_eq!(nested.args[1].expected(), "LIST of FLOAT");

        // What the server needs to route a task is still required.
        assert!(Definition::from_server(json!({"key": "add", "version": "1"})).is_err());
        assert!(Definition::from_server(json!("add")).is_err());

        // A guest's own self-description stays strict: an unknown field is refused.
        let error = parse_definitions(&Value::Array(vec![python_agent_add()]).to_string())
            .expect_err("strict for guests");
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    fn action(args: Value) -> String {
        json!([{"key": "f", "version": "1", "name": "F", "kind": "FUNCTION",
            "args": args, "returns": []}])
        .to_string()
    }

    #[test]
    fn bounds_the_cost_of_checking_args_at_load() {
        let leaf = |index: usize| json!({"key": format!("v{index}"), "kind": "INT"});
        let union = |width: usize| json!([{"key": "u", "kind": "UNION", "children": (0..width).map(leaf).collect::<Vec<_>>()}]);
        assert!(parse_definitions(&action(union(DefinitionCaps::DEFAULT.union_width))).is_ok());
        let error = parse_definitions(&action(union(DefinitionCaps::DEFAULT.union_width + 1)))
            .expect_err("too wide");
        assert!(
            error
                .to_string()
                .contains("UNION port 'u' has 33 variants; at most 32"),
            "{error}"
        );
        // Many narrow unions still add up to too many ports.
        let unions: Vec<Value> = (0..20)
            .map(|index| {
                json!({"key": format!("u{index}"), "kind": "UNION",
                    "children": (0..DefinitionCaps::DEFAULT.union_width).map(leaf).collect::<Vec<_>>()})
            })
            .collect();
        let error = parse_definitions(&action(Value::Array(unions))).expect_err("too many ports");
        assert!(
            error
                .to_string()
                .contains("it has 660 ports (nested ones included); at most 256"),
            "{error}"
        );
        let choices: Vec<Value> = (0..=DefinitionCaps::DEFAULT.choices)
            .map(|index| json!({"value": index, "label": "x"}))
            .collect();
        let error = parse_definitions(&action(
            json!([{"key": "e", "kind": "ENUM", "choices": choices}]),
        ))
        .expect_err("too many choices");
        assert!(
            error
                .to_string()
                .contains("1025 choices in all; at most 1024"),
            "{error}"
        );
    }

    #[test]
    fn explains_the_innermost_mismatch_of_big_args() {
        let def = definition(json!([{"key": "xs", "kind": "LIST", "children": [
            {"key": "...", "kind": "UNION", "children": [
                {"key": "a", "kind": "INT"}, {"key": "b", "kind": "STRING"}]}]}]));
        let mut items: Vec<Value> = (0..100_000).map(|index| json!(index)).collect();
        assert!(prepare_args(&def, args(json!({"xs": items.clone()}))).is_ok());
        items[77_777] = json!(true);
        let error = prepare_args(&def, args(json!({"xs": items}))).expect_err("one bad item");
        assert_eq!(error.path, "xs[77777]");
        assert_eq!(error.problem, "expected UNION, got boolean true");
    }

    /// A description of one action `f` with `changes` merged in, as JSON text.
    fn described(changes: Value) -> String {
        let mut action = json!({"key": "f", "version": "1", "name": "F", "kind": "FUNCTION",
            "args": [{"key": "xs", "kind": "LIST", "nullable": false,
                "children": [{"key": "...", "kind": "MODEL", "nullable": false,
                    "identifier": "@lab/point",
                    "children": [{"key": "x_1", "kind": "FLOAT", "nullable": false}]}]}],
            "returns": [{"key": "return0", "kind": "INT", "nullable": false}]});
        if let (Some(action), Some(changes)) = (action.as_object_mut(), changes.as_object()) {
            action.extend(changes.clone());
        }
        Value::Array(vec![action]).to_string()
    }

    fn port(key: &str) -> Value {
        json!([{"key": key, "kind": "INT", "nullable": false}])
    }

    #[test]
    fn keys_are_identifiers_and_texts_carry_no_control_characters() {
        let sane = parse_definitions(&described(json!({
            "name": "Two\nlines\tand tabs",
            "description": "Tabs\tand\nnewlines are fine; ünïcödé too: ⟨ok⟩",
        })))
        .expect("a sane description");
        assert_eq!(sane[0].args[0].children()[0].children()[0].key, "x_1");

        let refused = [
            (json!({"key": "two words"}), "is not an identifier"),
            (json!({"key": "1st"}), "is not an identifier"),
            (json!({"key": ""}), "is not an identifier"),
            (
                json!({"key": "\u{1b}]0;pwned\u{7}"}),
                "is not an identifier",
            ),
            (json!({"key": "schlüssel"}), "is not an identifier"),
            (
                json!({"key": "k".repeat(DefinitionCaps::DEFAULT.action_key + 1)}),
                "at most 2000",
            ),
            (
                json!({"args": port("a-b")}),
                "the port key \"a-b\" is not an identifier",
            ),
            (json!({"args": port("...")}), "is not an identifier"),
            (
                json!({"returns": port(&"r".repeat(DefinitionCaps::DEFAULT.port_key + 1))}),
                "at most 255",
            ),
            (
                json!({"name": "\u{1b}[2J\u{1b}[HCleared"}),
                "control character",
            ),
            (json!({"name": "line\rcarriage"}), "control character"),
            (
                json!({"name": "n".repeat(DefinitionCaps::DEFAULT.name + 1)}),
                "at most 1000",
            ),
            (json!({"description": "bell\u{7}"}), "only newline and tab"),
            (json!({"description": "c1 \u{9b}31m"}), "control character"),
            (json!({"version": "1\n2"}), "control character"),
            (
                json!({"version": "v".repeat(DefinitionCaps::DEFAULT.version + 1)}),
                "at most 100",
            ),
            (json!({"collections": ["a\u{1b}b"]}), "control character"),
            (
                json!({"args": [{"key": "s", "kind": "STRUCTURE", "nullable": false,
                    "identifier": "@x/\u{1b}[1m"}]}),
                "identifier",
            ),
            (
                json!({"args": [{"key": "m", "kind": "MODEL", "nullable": false,
                    "children": [{"key": "bad key", "kind": "INT", "nullable": false}]}]}),
                "\"bad key\" is not an identifier",
            ),
            (
                json!({"args": [{"key": "e", "kind": "ENUM", "nullable": false,
                    "choices": [{"value": 1, "label": "one\u{1b}]52;c;eA==\u{7}"}]}]}),
                "choice label",
            ),
            (
                json!({"args": [{"key": "a", "kind": "INT", "nullable": false,
                    "label": "\u{8}\u{8}"}]}),
                "label",
            ),
        ];
        for (changes, reason) in refused {
            let error = parse_definitions(&described(changes.clone()))
                .expect_err(&changes.to_string())
                .to_string();
            assert!(error.contains(reason), "{changes}: {error}");
            assert!(
                !error.contains(|c: char| c.is_control()),
                "the reason quotes guest text escaped: {error:?}"
            );
            assert!(error.len() < 400, "the reason is short: {error}");
        }
    }

    #[test]
    fn dotted_key_paths_are_bounded() {
        // Nested models whose keys are each within bounds, but whose path is not.
        let mut port = json!({"key": "leaf", "kind": "INT", "nullable": false});
        for _ in 0..3 {
            port = json!({"key": "k".repeat(200), "kind": "MODEL", "nullable": false,
                "children": [port]});
        }
        let error = parse_definitions(&described(json!({"args": [port]})))
            .expect_err("a long path")
            .to_string();
        assert!(error.contains("dotted key path"), "{error}");
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
