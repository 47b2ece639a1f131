//! Property-based fuzzing of everything a server or a caller controls: server frames, agent
//! frames (the local server's side), self-descriptions, and args checked against definitions.
//! No input may panic.
//!
//! Each property runs 256 cases by default; run longer with e.g.
//! `PROPTEST_CASES=200000 cargo test --release -p rekuest-host --test fuzz`.

use proptest::prelude::*;
use rekuest_host::definition::{Definition, parse_definitions, prepare_args};
use rekuest_host::protocol::messages::{FromAgent, ToAgent};
use serde_json::{Map, Value, json};

/// Arbitrary JSON, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| json!(number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "INT", "FLOAT", "LIST", "ASSIGN", "1", "", "return0", "..."
        ])
        .prop_map(|text| Value::String(text.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "id",
            "task",
            "args",
            "interface",
            "inquiries",
            "event",
            "seq",
            "step",
            "duration",
            "reason",
            "key",
            "kind",
            "nullable",
            "children",
            "default",
            "choices",
            "returns",
            "a",
            "b",
            "values",
        ])
        .prop_map(str::to_string),
        "[a-z]{1,6}",
    ]
}

/// A frame-shaped object: a known (or unknown) `type` plus arbitrary fields.
fn frame() -> impl Strategy<Value = String> {
    let kinds = prop::sample::select(vec![
        "INIT",
        "HEARTBEAT",
        "ASSIGN",
        "CANCEL",
        "INTERRUPT",
        "PAUSE",
        "RESUME",
        "COLLECT",
        "BOUNCE",
        "KICK",
        "EVENT_ACK",
        "PROTOCOL_ERROR",
        "REGISTER",
        "HEARTBEAT_ANSWER",
        "STARTED",
        "YIELD",
        "COMPLETED",
        "FAILED",
        "LOG",
        "PROGRESS",
        "SESSION_INIT",
        "NOPE",
    ]);
    (
        kinds,
        prop::collection::btree_map(field_name(), json_value(), 0..10),
    )
        .prop_map(|(kind, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), Value::String(kind.to_string()));
            Value::Object(object).to_string()
        })
}

/// A port of a random kind with plausible children and choices.
fn port(key: String) -> impl Strategy<Value = Value> {
    let kinds = prop::sample::select(vec![
        "INT",
        "FLOAT",
        "STRING",
        "BOOL",
        "LIST",
        "DICT",
        "MODEL",
        "ENUM",
        "STRUCTURE",
        "UNION",
        "DATE",
    ]);
    (kinds, any::<bool>(), prop::option::of(json_value())).prop_map(move |(kind, nullable, default)| {
        let mut port = json!({"key": key, "kind": kind, "nullable": nullable});
        match kind {
            "LIST" | "DICT" => port["children"] = json!([{"key": "...", "kind": "INT", "nullable": false}]),
            "MODEL" => port["children"] = json!([{"key": "x", "kind": "FLOAT", "nullable": false}]),
            "UNION" => port["children"] = json!([{"key": "0", "kind": "INT", "nullable": false}, {"key": "1", "kind": "STRING", "nullable": false}]),
            "ENUM" => port["choices"] = json!([{"value": "A", "label": "A"}, {"value": "B", "label": "B"}]),
            "STRUCTURE" => port["identifier"] = json!("@test/thing"),
            _ => {}
        }
        if let Some(default) = default {
            port["default"] = default;
        }
        port
    })
}

fn definition() -> impl Strategy<Value = Definition> {
    (port("a".into()), port("b".into()), port("c".into())).prop_map(|(a, b, c)| {
        serde_json::from_value(json!({
            "key": "f", "version": "1", "name": "F", "kind": "FUNCTION",
            "args": [a, b, c], "returns": []
        }))
        .expect("generated definitions have the DefinitionInput shape")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn server_frames_never_panic(text in ".{0,200}") {
        let _ = ToAgent::parse(&text);
    }

    #[test]
    fn structured_server_frames_never_panic(text in frame()) {
        if let Ok(parsed) = ToAgent::parse(&text) {
            // What parses also serializes.
            let _ = parsed.to_json();
        }
    }

    #[test]
    fn agent_frames_never_panic(text in frame()) {
        if let Ok(parsed) = FromAgent::parse(&text) {
            let _ = parsed.to_json();
        }
        let half: String = text.chars().take(text.chars().count() / 2).collect();
        let _ = FromAgent::parse(&half);
    }

    #[test]
    fn self_descriptions_never_panic(value in json_value()) {
        let text = Value::Array(vec![value]).to_string();
        if let Ok(definitions) = parse_definitions(&text) {
            let again = serde_json::to_string(&definitions).expect("definitions serialize");
            prop_assert_eq!(parse_definitions(&again).expect("round trip").len(), definitions.len());
        }
    }

    #[test]
    fn args_are_checked_without_panicking(
        definition in definition(),
        args in prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string),
            json_value(),
            0..4,
        ),
    ) {
        let args: Map<String, Value> = args.into_iter().collect();
        if let Ok(prepared) = prepare_args(&definition, args) {
            for port in &definition.args {
                let present = prepared.get(&port.key).is_some_and(|value| !value.is_null());
                prop_assert!(present || port.nullable, "non-nullable '{}' let through", port.key);
            }
        }
    }
}
