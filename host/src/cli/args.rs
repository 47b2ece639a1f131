//! Turning `key=value` words and `--args-json JSON` into the args object of a task, checked
//! against the action's definition before anything runs.

use std::collections::HashSet;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use rekuest_host::definition::{Definition, Port, PortKind, prepare_args};
use rekuest_host::envelope::IDENTIFIER_KEY;

/// Builds the args of `definition` from `--args-json` JSON and `key=value` words (words win
/// over the JSON's keys; a key given twice as a word is an error), and checks them as the
/// host will: every arg known, every model field known, nothing missing, every value fitting
/// its port.
///
/// Each value is read as the port's kind: `a=3` is an INT for an INT port and the text "3"
/// for a STRING port; `a=null` is null for a nullable port; LIST, DICT, MODEL and other
/// structured ports take JSON (`xs=[1,2]`). A STRUCTURE takes its reference
/// (`image=image:42`) or its envelope as JSON
/// (`image={"__identifier": "@mikro/image", "object": "image:42"}`).
pub fn build_args(
    definition: &Definition,
    json: Option<&str>,
    words: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let mut args = match json {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text).context("--args-json is not valid JSON")? {
            Value::Object(map) => map,
            other => bail!(
                "--args-json must be a JSON object keyed by argument name, got {}",
                describe(&other)
            ),
        },
    };
    for key in args.keys() {
        port(definition, key).context("in --args-json")?;
    }
    let mut given = HashSet::new();
    for word in words {
        let Some((key, text)) = word.split_once('=') else {
            bail!("'{word}' is not of the form key=value");
        };
        let port = port(definition, key)?;
        if !given.insert(key) {
            bail!("argument '{key}' is given twice; give each argument once");
        }
        let value = coerce(port, text).with_context(|| {
            format!(
                "argument '{key}': '{text}' is not a valid {}",
                port.expected()
            )
        })?;
        args.insert(key.to_string(), value);
    }
    for port in &definition.args {
        if let Some(value) = args.get(&port.key) {
            check_fields(port, value, &port.key)?;
        }
    }
    prepare_args(definition, args.clone())?;
    Ok(args)
}

/// The arg port `key` of `definition`, or an error listing its args.
fn port<'a>(definition: &'a Definition, key: &str) -> anyhow::Result<&'a Port> {
    match definition.args.iter().find(|port| port.key == key) {
        Some(port) => Ok(port),
        None => {
            let known: Vec<&str> = definition.args.iter().map(|p| p.key.as_str()).collect();
            bail!(
                "action '{}' has no argument '{key}'; its arguments are: {}",
                definition.key,
                if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// Refuses fields a MODEL does not have, at any depth (`points[1].z`), as an unknown arg is
/// refused: the host would otherwise drop them silently.
fn check_fields(port: &Port, value: &Value, path: &str) -> anyhow::Result<()> {
    let children = port.children.as_deref().unwrap_or_default();
    match (port.kind, value) {
        (PortKind::Model, Value::Object(fields)) => {
            for (key, item) in fields {
                match children.iter().find(|field| &field.key == key) {
                    Some(field) => check_fields(field, item, &format!("{path}.{key}"))?,
                    // The official client tags models with their identifier.
                    None if key == IDENTIFIER_KEY => {}
                    None => {
                        let known: Vec<&str> =
                            children.iter().map(|field| field.key.as_str()).collect();
                        bail!(
                            "argument '{path}': {} has no field '{key}'; its fields are: {}",
                            port.expected(),
                            if known.is_empty() {
                                "(none)".into()
                            } else {
                                known.join(", ")
                            }
                        );
                    }
                }
            }
        }
        (PortKind::List, Value::Array(items)) => {
            if let Some(child) = children.first() {
                for (index, item) in items.iter().enumerate() {
                    check_fields(child, item, &format!("{path}[{index}]"))?;
                }
            }
        }
        (PortKind::Dict, Value::Object(entries)) => {
            if let Some(child) = children.first() {
                for (key, item) in entries {
                    check_fields(child, item, &format!("{path}[{key:?}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads `text` as a value of `port`.
fn coerce(port: &Port, text: &str) -> anyhow::Result<Value> {
    if port.nullable && text.trim() == "null" {
        return Ok(Value::Null);
    }
    Ok(match port.kind {
        PortKind::Structure | PortKind::MemoryStructure if text.trim_start().starts_with('{') => {
            serde_json::from_str(text)?
        }
        PortKind::String
        | PortKind::Enum
        | PortKind::Date
        | PortKind::Structure
        | PortKind::MemoryStructure => Value::String(text.to_string()),
        PortKind::Int => integer(text.trim())?,
        PortKind::Float => {
            let number: f64 = text.trim().parse().ok().context("expected a number")?;
            serde_json::Number::from_f64(number)
                .map(Value::Number)
                .context("expected a finite number")?
        }
        PortKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "0" | "off" => Value::Bool(false),
            _ => bail!("expected true or false"),
        },
        _ => serde_json::from_str(text)?,
    })
}

/// An INT as the host takes it: any whole number from `i64::MIN` to `u64::MAX`.
fn integer(text: &str) -> anyhow::Result<Value> {
    if let Ok(number) = text.parse::<i64>() {
        return Ok(Value::from(number));
    }
    if let Ok(number) = text.parse::<u64>() {
        return Ok(Value::from(number));
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        bail!("expected an integer from {} to {}", i64::MIN, u64::MAX);
    }
    bail!("expected an integer")
}

/// Names a JSON value's type for an error.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition() -> Definition {
        serde_json::from_value(json!({
            "key": "f", "version": "1", "name": "F", "kind": "FUNCTION", "returns": [],
            "args": [
                {"key": "n", "kind": "INT", "nullable": false},
                {"key": "label", "kind": "STRING", "nullable": false},
                {"key": "flag", "kind": "BOOL", "nullable": true},
                {"key": "xs", "kind": "LIST", "nullable": false,
                 "children": [{"key": "...", "kind": "FLOAT", "nullable": false}]},
                {"key": "image", "kind": "STRUCTURE", "nullable": true,
                 "identifier": "@mikro/image"},
                {"key": "note", "kind": "STRING", "nullable": true},
                {"key": "points", "kind": "LIST", "nullable": true, "children": [
                    {"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Point",
                     "children": [
                        {"key": "x", "kind": "FLOAT", "nullable": false},
                        {"key": "y", "kind": "FLOAT", "nullable": false}
                     ]}
                ]}
            ]
        }))
        .expect("valid definition")
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn reads_values_by_port_kind() {
        let args = build_args(
            &definition(),
            Some(r#"{"n": 1, "label": "from json"}"#),
            &words(&["n=3", "label=3", "flag=yes", "xs=[1, 2.5]"]),
        )
        .expect("valid");
        assert_eq!(
            Value::Object(args),
            json!({"n": 3, "label": "3", "flag": true, "xs": [1, 2.5]})
        );
    }

    #[test]
    fn structures_take_a_reference_or_an_envelope() {
        let envelope = r#"{"__identifier": "@mikro/image", "object": "image:1"}"#;
        for (word, value) in [
            ("image=image:1".to_string(), json!("image:1")),
            (
                format!("image={envelope}"),
                json!({"__identifier": "@mikro/image", "object": "image:1"}),
            ),
        ] {
            let mut all = words(&["n=1", "label=x", "xs=[]"]);
            all.push(word);
            let args = build_args(&definition(), None, &all).expect("valid");
            assert_eq!(args["image"], value);
        }
        let error = build_args(&definition(), None, &words(&["image={oops"])).expect_err("bad");
        assert_eq!(
            format!("{error}"),
            "argument 'image': '{oops' is not a valid STRUCTURE @mikro/image"
        );
    }

    #[test]
    fn explains_bad_words() {
        let error = build_args(&definition(), None, &words(&["n=three"])).expect_err("bad int");
        assert_eq!(
            format!("{error}"),
            "argument 'n': 'three' is not a valid INT"
        );
        let error = build_args(&definition(), None, &words(&["m=1"])).expect_err("unknown");
        assert!(
            format!("{error}")
                .contains("its arguments are: n, label, flag, xs, image, note, points")
        );
        assert!(build_args(&definition(), None, &words(&["n"])).is_err());
    }

    fn error_of(json: Option<&str>, list: &[&str]) -> String {
        let error = build_args(&definition(), json, &words(list)).expect_err("refused");
        format!("{error:#}")
    }

    #[test]
    fn numbers_say_what_was_expected() {
        assert_eq!(
            error_of(None, &["n=1.5", "label=x", "xs=[]"]),
            "argument 'n': '1.5' is not a valid INT: expected an integer"
        );
        assert!(
            error_of(None, &["n=99999999999999999999999", "label=x", "xs=[]"])
                .ends_with("expected an integer from -9223372036854775808 to 18446744073709551615")
        );
        let args = build_args(
            &definition(),
            None,
            &words(&["n=18446744073709551615", "label=x", "xs=[]"]),
        )
        .expect("an INT up to u64::MAX fits the port");
        assert_eq!(args["n"], json!(u64::MAX));
    }

    #[test]
    fn json_errors_name_the_flag() {
        assert!(error_of(Some("{"), &[]).starts_with("--args-json is not valid JSON: "));
        assert_eq!(
            error_of(Some("[1]"), &[]),
            "--args-json must be a JSON object keyed by argument name, got a list"
        );
    }

    #[test]
    fn unknown_keys_and_model_fields_are_refused_wherever_they_come_from() {
        assert_eq!(
            error_of(Some(r#"{"n": 1, "m": 2}"#), &[]),
            "in --args-json: action 'f' has no argument 'm'; its arguments are: n, label, flag, \
             xs, image, note, points"
        );
        let stray = r#"[{"x": 1, "y": 2}, {"x": 1, "y": 2, "z": 3}]"#;
        let expected = "argument 'points[1]': MODEL Point has no field 'z'; its fields are: x, y";
        assert_eq!(
            error_of(
                None,
                &["n=1", "label=x", "xs=[]", &format!("points={stray}")]
            ),
            expected
        );
        let json = format!(r#"{{"n": 1, "label": "x", "xs": [], "points": {stray}}}"#);
        assert_eq!(error_of(Some(&json), &[]), expected);
        // The official client tags models with their identifier.
        build_args(
            &definition(),
            None,
            &words(&[
                "n=1",
                "label=x",
                "xs=[]",
                r#"points=[{"x": 1, "y": 2, "__identifier": "Point"}]"#,
            ]),
        )
        .expect("the identifier key is not a field");
    }

    #[test]
    fn a_key_given_twice_is_refused_and_null_is_null_where_allowed() {
        assert_eq!(
            error_of(None, &["n=1", "n=2"]),
            "argument 'n' is given twice; give each argument once"
        );
        let args = build_args(
            &definition(),
            Some(r#"{"n": 1}"#),
            &words(&["n=2", "label=null", "xs=[]", "note=null", "image=null"]),
        )
        .expect("valid");
        assert_eq!(args["n"], json!(2), "a word overrides the JSON");
        assert_eq!(
            args["label"],
            json!("null"),
            "text for a port that is not nullable"
        );
        assert_eq!(args["note"], Value::Null);
        assert_eq!(args["image"], Value::Null);
    }

    #[test]
    fn missing_args_are_refused_before_anything_runs() {
        assert_eq!(
            error_of(None, &["n=1", "label=x"]),
            "argument 'xs': missing; expected LIST of FLOAT"
        );
    }
}
