//! Turning `key=value` words and `--args JSON` into the args object of a task.

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use rekuest_host::definition::{Definition, PortKind, expected};

/// Builds the args of `definition` from `--args` JSON and `key=value` words (words win).
///
/// Each value is read as the port's kind: `a=3` is an INT for an INT port and the text "3"
/// for a STRING port; LIST, DICT, MODEL and other structured ports take JSON (`xs=[1,2]`). A
/// STRUCTURE takes its reference (`image=image:42`) or its envelope as JSON
/// (`image={"__identifier": "@mikro/image", "object": "image:42"}`).
pub fn build_args(
    definition: &Definition,
    json: Option<&str>,
    words: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let mut args = match json {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text).context("--args is not valid JSON")? {
            Value::Object(map) => map,
            other => bail!("--args must be a JSON object keyed by arg name, got {other}"),
        },
    };
    for word in words {
        let Some((key, text)) = word.split_once('=') else {
            bail!("'{word}' is not of the form key=value");
        };
        let Some(port) = definition.args.iter().find(|port| port.key == key) else {
            let known: Vec<&str> = definition.args.iter().map(|p| p.key.as_str()).collect();
            bail!(
                "action '{}' has no argument '{key}'; its arguments are: {}",
                definition.key,
                if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                }
            );
        };
        let value = coerce(port.kind, text).with_context(|| {
            format!(
                "argument '{key}': '{text}' is not a valid {}",
                expected(port)
            )
        })?;
        args.insert(key.to_string(), value);
    }
    Ok(args)
}

fn coerce(kind: PortKind, text: &str) -> anyhow::Result<Value> {
    Ok(match kind {
        PortKind::Structure | PortKind::MemoryStructure if text.trim_start().starts_with('{') => {
            serde_json::from_str(text)?
        }
        PortKind::String
        | PortKind::Enum
        | PortKind::Date
        | PortKind::Structure
        | PortKind::MemoryStructure => Value::String(text.to_string()),
        PortKind::Int => Value::from(text.trim().parse::<i64>()?),
        PortKind::Float => {
            let number: f64 = text.trim().parse()?;
            serde_json::Number::from_f64(number)
                .map(Value::Number)
                .context("not a finite number")?
        }
        PortKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "0" | "off" => Value::Bool(false),
            _ => bail!("expected true or false"),
        },
        _ => serde_json::from_str(text)?,
    })
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
                 "identifier": "@mikro/image"}
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
            let args = build_args(&definition(), None, &[word]).expect("valid");
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
        assert!(format!("{error}").contains("its arguments are: n, label, flag, xs, image"));
        assert!(build_args(&definition(), None, &words(&["n"])).is_err());
        assert!(build_args(&definition(), Some("[1]"), &[]).is_err());
    }
}
