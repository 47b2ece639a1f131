//! Structures on the wire: the envelope `{"__identifier": "@mikro/image", "object": "<ref>"}`.
//!
//! The official client (rekuest-next) sends a STRUCTURE arg either as that envelope or as the
//! bare reference, and accepts a STRUCTURE return only as the envelope. Guests only ever see
//! and send bare references: the host [opens](open) envelopes in args before a task runs and
//! [wraps](wrap_returns) bare references in returns before they leave, following the ports of
//! the action's definition. MEMORY_STRUCTURE references travel the same way.
//!
//! UNION values get the same treatment: the official client tags them with their variant,
//! `{"__use": 1, "__value": ...}`, and reads returns only in that form; guests see and send the
//! bare value. The host untags args (a bare value is accepted too) and tags returns with the
//! first variant the value fits.

use serde_json::{Map, Value};

use crate::definition::{Port, PortKind, fits};

/// The envelope's key naming the structure (also sent, and ignored, in MODEL values).
pub const IDENTIFIER_KEY: &str = "__identifier";
/// The envelope's key holding the reference.
pub const OBJECT_KEY: &str = "object";
/// The key naming a tagged UNION value's variant (its index among the port's children).
pub const VARIANT_KEY: &str = "__use";
/// The key holding a tagged UNION value's value.
pub const VALUE_KEY: &str = "__value";

/// The variant and the value of a tagged UNION value (an object of exactly `__use`, a
/// non-negative integer, and `__value`); `None` for anything else.
pub fn tagged(value: &Value) -> Option<(usize, &Value)> {
    let Value::Object(fields) = value else {
        return None;
    };
    if fields.len() != 2 {
        return None;
    }
    let variant = usize::try_from(fields.get(VARIANT_KEY)?.as_u64()?).ok()?;
    Some((variant, fields.get(VALUE_KEY)?))
}

/// The value inside a tagged UNION value, taken out of it (`value` is left null).
pub fn untag(value: &mut Value) -> Value {
    match value {
        Value::Object(fields) => fields.remove(VALUE_KEY).unwrap_or(Value::Null),
        _ => value.take(),
    }
}

/// Why an arg in envelope form was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    /// The envelope names another structure than the port.
    #[error("a reference to {0}")]
    OtherStructure(String),
    /// `__identifier` is not a string.
    #[error("an envelope whose \"__identifier\" is not a string")]
    BadIdentifier,
    /// `object` is missing.
    #[error("an object without an \"object\" key")]
    NoObject,
    /// `object` is not a reference (a string or a number).
    #[error("an envelope whose \"object\" is not a string or a number")]
    BadObject,
}

/// Whether values of `port` are structure references.
fn is_structure(port: &Port) -> bool {
    matches!(port.kind, PortKind::Structure | PortKind::MemoryStructure)
}

/// Whether returns of `ports` need [`wrap_returns`]: a structure or a UNION port appears
/// anywhere in them (children included).
pub fn needs_wrapping(ports: &[Port]) -> bool {
    ports.iter().any(|port| {
        is_structure(port)
            || port.kind == PortKind::Union
            || port.children.as_deref().is_some_and(needs_wrapping)
    })
}

/// The reference an arg of the structure port `port` carries: the value itself when it is a
/// bare reference (a string or a number), or the `object` of its envelope.
pub fn reference<'a>(port: &Port, value: &'a Value) -> Result<&'a Value, EnvelopeError> {
    let Value::Object(envelope) = value else {
        return Ok(value);
    };
    match (envelope.get(IDENTIFIER_KEY), &port.identifier) {
        (None, _) | (Some(_), None) => {}
        (Some(Value::String(named)), Some(expected)) if named == expected => {}
        (Some(Value::String(named)), Some(_)) => {
            return Err(EnvelopeError::OtherStructure(named.clone()));
        }
        (Some(_), Some(_)) => return Err(EnvelopeError::BadIdentifier),
    }
    match envelope.get(OBJECT_KEY) {
        None => Err(EnvelopeError::NoObject),
        Some(object) if object.is_string() || object.is_number() => Ok(object),
        Some(_) => Err(EnvelopeError::BadObject),
    }
}

/// Replaces an envelope in `value` (an arg of the structure port `port`) with its reference;
/// leaves anything else, including a bare reference, as it is.
pub fn open(port: &Port, value: &mut Value) -> Result<(), EnvelopeError> {
    if value.is_object() {
        *value = reference(port, value)?.clone();
    }
    Ok(())
}

/// Puts every bare structure reference in `returns` (keyed by port) into its envelope and
/// tags every UNION value with the first variant it fits.
///
/// References already in an envelope and UNION values already tagged are kept (their insides
/// still wrapped); a UNION value that fits none of its variants is left as it is.
pub fn wrap_returns(ports: &[Port], returns: &mut Map<String, Value>) {
    for port in ports {
        if let Some(value) = returns.get_mut(&port.key) {
            wrap(port, value);
        }
    }
}

fn wrap(port: &Port, value: &mut Value) {
    let children = port.children.as_deref().unwrap_or(&[]);
    match (port.kind, value) {
        (_, Value::Null) => {}
        (PortKind::Structure | PortKind::MemoryStructure, value)
            if value.is_string() || value.is_number() =>
        {
            let mut envelope = Map::with_capacity(2);
            let identifier = port.identifier.clone().map_or(Value::Null, Value::String);
            envelope.insert(IDENTIFIER_KEY.into(), identifier);
            envelope.insert(OBJECT_KEY.into(), value.take());
            *value = Value::Object(envelope);
        }
        (PortKind::List, Value::Array(items)) => {
            if let Some(child) = children.first().filter(|child| holds(child)) {
                items.iter_mut().for_each(|item| wrap(child, item));
            }
        }
        (PortKind::Dict, Value::Object(entries)) => {
            if let Some(child) = children.first().filter(|child| holds(child)) {
                entries.values_mut().for_each(|item| wrap(child, item));
            }
        }
        (PortKind::Model, Value::Object(fields)) => wrap_returns(children, fields),
        (PortKind::Union, value) => {
            if let Some((variant, _)) = tagged(value) {
                if let (Some(child), Value::Object(fields)) = (children.get(variant), value)
                    && let Some(inner) = fields.get_mut(VALUE_KEY)
                {
                    wrap(child, inner);
                }
                return;
            }
            let Some(variant) = children.iter().position(|child| fits(child, value)) else {
                return;
            };
            let mut inner = value.take();
            wrap(&children[variant], &mut inner);
            let mut fields = Map::with_capacity(2);
            fields.insert(VARIANT_KEY.into(), Value::from(variant));
            fields.insert(VALUE_KEY.into(), inner);
            *value = Value::Object(fields);
        }
        _ => {}
    }
}

/// Whether `port` is or contains a structure or UNION port (skips walking plain lists).
fn holds(port: &Port) -> bool {
    needs_wrapping(std::slice::from_ref(port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn port(value: Value) -> Port {
        serde_json::from_value(value).expect("a port")
    }

    fn image() -> Value {
        json!({"key": "image", "kind": "STRUCTURE", "identifier": "@mikro/image"})
    }

    #[test]
    fn opens_envelopes_and_keeps_bare_references() {
        let image = port(image());
        let mut value = json!({"__identifier": "@mikro/image", "object": "42"});
        assert_eq!(open(&image, &mut value), Ok(()));
        assert_eq!(value, json!("42"));
        let mut value = json!({"__identifier": "@mikro/image", "object": 7});
        assert_eq!(open(&image, &mut value), Ok(()));
        assert_eq!(value, json!(7));
        let mut value = json!("image:1");
        assert_eq!(open(&image, &mut value), Ok(()));
        assert_eq!(value, json!("image:1"));
    }

    #[test]
    fn refuses_envelopes_of_other_structures_or_without_a_reference() {
        let image = port(image());
        let cases = [
            (
                json!({"__identifier": "@mikro/video", "object": "1"}),
                "a reference to @mikro/video",
            ),
            (
                json!({"__identifier": 3, "object": "1"}),
                "an envelope whose \"__identifier\" is not a string",
            ),
            (
                json!({"__identifier": "@mikro/image"}),
                "an object without an \"object\" key",
            ),
            (
                json!({"__identifier": "@mikro/image", "object": ["1"]}),
                "an envelope whose \"object\" is not a string or a number",
            ),
        ];
        for (mut value, message) in cases {
            let original = value.clone();
            let error = open(&image, &mut value).expect_err("refused");
            assert_eq!(error.to_string(), message);
            assert_eq!(value, original, "a refused arg is left as it was");
        }
    }

    #[test]
    fn wraps_references_in_lists_dicts_and_models() {
        let ports = [
            port(image()),
            port(json!({"key": "many", "kind": "LIST", "children": [image()]})),
            port(json!({"key": "named", "kind": "DICT", "children": [image()]})),
            port(
                json!({"key": "labelled", "kind": "MODEL", "identifier": "Labelled",
                "children": [image(), {"key": "label", "kind": "STRING"}]}),
            ),
            port(
                json!({"key": "maybe", "kind": "STRUCTURE", "identifier": "@mikro/image",
                "nullable": true}),
            ),
            port(json!({"key": "counts", "kind": "LIST",
                "children": [{"key": "...", "kind": "INT"}]})),
        ];
        let envelope =
            |reference: &str| json!({"__identifier": "@mikro/image", "object": reference});
        let mut returns = json!({
            "image": "image:1",
            "many": ["image:2", envelope("image:3")],
            "named": {"a": "image:4"},
            "labelled": {"image": "image:5", "label": "image:6"},
            "maybe": null,
            "counts": [1, 2],
        });
        let map = returns.as_object_mut().expect("an object");
        assert!(needs_wrapping(&ports));
        wrap_returns(&ports, map);
        assert_eq!(
            returns,
            json!({
                "image": envelope("image:1"),
                "many": [envelope("image:2"), envelope("image:3")],
                "named": {"a": envelope("image:4")},
                "labelled": {"image": envelope("image:5"), "label": "image:6"},
                "maybe": null,
                "counts": [1, 2],
            })
        );
        assert!(!needs_wrapping(&ports[5..]));
    }

    #[test]
    fn tags_union_returns_with_the_first_variant_they_fit() {
        let ports = [
            port(json!({"key": "either", "kind": "UNION", "children": [
                {"key": "0", "kind": "INT"}, image()]})),
            port(json!({"key": "many", "kind": "LIST", "children": [
                {"key": "...", "kind": "UNION", "children": [
                    {"key": "0", "kind": "BOOL"}, {"key": "1", "kind": "STRING"}]}]})),
            port(json!({"key": "kept", "kind": "UNION", "children": [
                {"key": "0", "kind": "INT"}, image()]})),
            port(json!({"key": "odd", "kind": "UNION", "children": [{"key": "0", "kind": "INT"}]})),
        ];
        assert!(needs_wrapping(&ports[1..2]));
        let mut returns = json!({
            "either": "image:1",
            "many": [true, "x"],
            "kept": {"__use": 1, "__value": "image:2"},
            "odd": "not an int",
        });
        wrap_returns(&ports, returns.as_object_mut().expect("an object"));
        assert_eq!(
            returns,
            json!({
                "either": {"__use": 1, "__value":
                    {"__identifier": "@mikro/image", "object": "image:1"}},
                "many": [{"__use": 0, "__value": true}, {"__use": 1, "__value": "x"}],
                "kept": {"__use": 1, "__value":
                    {"__identifier": "@mikro/image", "object": "image:2"}},
                "odd": "not an int",
            })
        );
    }
}
