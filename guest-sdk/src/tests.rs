//! The macros end to end: definitions and runs of `#[register]` functions and derived ports.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Value, json};

use crate::context::tests::FakeHost;
use crate::definition::describe;
use crate::dispatch::{self, Action, Registered, RunError};
use crate::prelude::*;

/// Add two numbers.
///
/// Adds them exactly; overflow wraps.
///
/// * `a` - the first summand
/// * `b` - the second summand
#[register]
fn add_numbers(a: i64, #[arg(default = 3, label = "B")] b: i64) -> i64 {
    a.wrapping_add(b)
}

/// Divide with remainder.
///
/// # Arguments
///
/// * `a` - the dividend
/// * `b` - the divisor
///
/// # Returns
///
/// * the quotient
/// * the remainder
#[register(name = "Divmod", version = "2")]
fn divmod(a: i64, b: i64) -> Result<(i64, i64), String> {
    if b == 0 {
        return Err("cannot divide by zero".into());
    }
    Ok((a / b, a % b))
}

#[register]
fn nothing(ctx: &Context) {
    ctx.info("did nothing");
}

/// How to change the case of text.
#[derive(Enum, Debug, PartialEq)]
enum Case {
    /// ALL CAPITALS
    Upper,
    Lower,
}

/// A point in the plane.
#[derive(Model, Debug, PartialEq)]
struct Point {
    /// Horizontal.
    x: f64,
    y: Option<f64>,
}

/// Shift points and change a label's case.
#[register]
fn shift(
    points: Vec<Point>,
    #[arg(description = "how far")] by: f64,
    label: Option<String>,
    case: Case,
) -> (Vec<Point>, HashMap<String, String>) {
    let shifted = points
        .into_iter()
        .map(|point| Point {
            x: point.x + by,
            y: point.y,
        })
        .collect();
    let label = label.unwrap_or_default();
    let label = match case {
        Case::Upper => label.to_uppercase(),
        Case::Lower => label.to_lowercase(),
    };
    (shifted, HashMap::from([("label".to_owned(), label)]))
}

/// Count to n.
#[register]
fn count(ctx: Context, n: i64) -> impl Iterator<Item = i64> {
    (1..=n).inspect(move |i| ctx.progress(i * 100 / n, None))
}

/// Halve even numbers; odd ones fail.
#[register]
fn halves(numbers: Vec<i64>) -> Result<impl Iterator<Item = Result<i64, String>>, String> {
    if numbers.is_empty() {
        return Err("no numbers".into());
    }
    Ok(numbers.into_iter().map(|number| {
        if number % 2 == 0 {
            Ok(number / 2)
        } else {
            Err(format!("{number} is odd"))
        }
    }))
}

#[register]
fn explode(message: String) -> i64 {
    panic!("{message}")
}

/// A running total kept on the agent.
#[derive(Model, Clone, Debug, PartialEq)]
struct Tally {
    /// The total so far.
    total: i64,
}

impl State for Tally {
    const KEY: &'static str = "tally";
}

/// Add to the tally through the `add` action.
#[register(
    state = Tally,
    lock = "tally",
    dependency = "add",
    dependency(key = "backup", hash = "0f0f", optional)
)]
fn tally(by: i64, ctx: &Context) -> Result<i64, String> {
    let mut tally: Tally = ctx.state()?;
    tally.total = ctx
        .call_as("add", json!({"a": tally.total, "b": by}))
        .map_err(|error| error.to_string())?;
    ctx.set_state(&tally)?;
    Ok(tally.total)
}

mod nested {
    use crate::prelude::*;

    /// Double a number.
    #[register]
    pub(crate) fn double(x: i64) -> i64 {
        x * 2
    }
}

// On the host this only checks that the listing compiles: the WIT exports are wasm-only.
crate::export_actions!(
    add_numbers,
    nested::double,
    divmod,
    nothing,
    shift,
    count,
    halves,
    explode,
    tally
);

const ACTIONS: &[Action] = &[
    <nested::double as Registered>::ACTION,
    <add_numbers as Registered>::ACTION,
    <divmod as Registered>::ACTION,
    <nothing as Registered>::ACTION,
    <shift as Registered>::ACTION,
    <count as Registered>::ACTION,
    <halves as Registered>::ACTION,
    <explode as Registered>::ACTION,
    <tally as Registered>::ACTION,
];

fn definition(key: &str) -> Value {
    let all: Value = serde_json::from_str(&describe(ACTIONS)).expect("JSON");
    all.as_array()
        .into_iter()
        .flatten()
        .find(|definition| definition["key"] == key)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Runs `key`, returning the result and the host's events.
fn run(key: &str, args: Value) -> (Result<(), RunError>, Rc<FakeHost>) {
    let host = Rc::new(FakeHost::default());
    let ctx = crate::Context::new(host.clone());
    let result = dispatch::run(ACTIONS, key, &args.to_string(), &ctx);
    (result, host)
}

#[test]
fn the_function_stays_callable() {
    assert_eq!(add_numbers(1, 2), 3);
    assert_eq!(nested::double(2), 4);
}

#[test]
fn actions_in_modules_are_found() {
    let (result, host) = run("double", json!({"x": 21}));
    assert_eq!(result, Ok(()));
    assert_eq!(host.yields(), [r#"{"return0":42}"#]);
}

#[test]
fn definitions_follow_the_docs() {
    assert_eq!(
        definition("add_numbers"),
        json!({
            "key": "add_numbers", "version": "1", "name": "Add Numbers",
            "description": "Add two numbers.\n\nAdds them exactly; overflow wraps.",
            "kind": "FUNCTION", "stateful": false, "collections": [],
            "args": [
                {"key": "a", "kind": "INT", "nullable": false, "description": "the first summand"},
                {"key": "b", "kind": "INT", "nullable": true, "description": "the second summand",
                 "default": 3, "label": "B"},
            ],
            "returns": [{"key": "return0", "kind": "INT", "nullable": false}],
        })
    );
    let divmod = definition("divmod");
    assert_eq!(divmod["name"], "Divmod");
    assert_eq!(divmod["version"], "2");
    assert_eq!(divmod["description"], "Divide with remainder.");
    assert_eq!(divmod["args"][1]["description"], "the divisor");
    assert_eq!(
        divmod["returns"],
        json!([
            {"key": "return0", "kind": "INT", "nullable": false, "description": "the quotient"},
            {"key": "return1", "kind": "INT", "nullable": false, "description": "the remainder"},
        ])
    );
    let nothing = definition("nothing");
    assert_eq!(nothing["description"], "No Description");
    assert_eq!(nothing["args"], json!([]));
    assert_eq!(nothing["returns"], json!([]));
}

/// What `describe` returns for [`ACTIONS`], byte for byte: the host registers it and hashes
/// it (`rekuest-host`'s registration tests pin that form from this same file), so a change
/// here changes every registered component's definition hash.
const PINNED_DESCRIBE: &str = include_str!("../tests/describe.json");

#[test]
fn describe_output_is_pinned_byte_for_byte() {
    assert_eq!(describe(ACTIONS), PINNED_DESCRIBE.trim_end());
}

#[test]
fn derived_ports() {
    let shift = definition("shift");
    assert_eq!(
        shift["args"],
        json!([
            {"key": "points", "kind": "LIST", "nullable": false, "children": [
                {"key": "...", "kind": "MODEL", "nullable": false, "identifier": "Point",
                 "description": "A point in the plane.", "children": [
                    {"key": "x", "kind": "FLOAT", "nullable": false, "description": "Horizontal."},
                    {"key": "y", "kind": "FLOAT", "nullable": true},
                ]},
            ]},
            {"key": "by", "kind": "FLOAT", "nullable": false, "description": "how far"},
            {"key": "label", "kind": "STRING", "nullable": true},
            {"key": "case", "kind": "ENUM", "nullable": false, "identifier": "Case",
             "description": "How to change the case of text.", "choices": [
                {"value": "Upper", "label": "Upper", "description": "ALL CAPITALS"},
                {"value": "Lower", "label": "Lower"},
            ]},
        ])
    );
    assert_eq!(shift["returns"][0]["kind"], "LIST");
    assert_eq!(shift["returns"][1]["kind"], "DICT");
    assert_eq!(definition("count")["kind"], "GENERATOR");
    assert_eq!(
        definition("count")["args"],
        json!([{"key": "n", "kind": "INT", "nullable": false}])
    );
    assert_eq!(definition("halves")["returns"][0]["kind"], "INT");
}

#[test]
fn functions_yield_once() {
    let (result, host) = run("add_numbers", json!({"a": 1}));
    assert_eq!(result, Ok(()));
    assert_eq!(host.yields(), [r#"{"return0":4}"#]);

    let (result, host) = run("divmod", json!({"a": 7, "b": 2}));
    assert_eq!(result, Ok(()));
    assert_eq!(host.yields(), [r#"{"return0":3,"return1":1}"#]);

    let (result, host) = run("nothing", json!({}));
    assert_eq!(result, Ok(()));
    assert_eq!(*host.events.borrow(), ["log Info did nothing", "yield {}"]);
}

#[test]
fn models_enums_and_options_cross_the_wire() {
    let (result, host) = run(
        "shift",
        json!({"points": [{"x": 1, "y": null}, {"x": 2.5, "y": 1}], "by": 1, "case": "Upper",
               "label": "left"}),
    );
    assert_eq!(result, Ok(()));
    let yielded: Value = serde_json::from_str(&host.yields()[0]).expect("JSON");
    assert_eq!(
        yielded,
        json!({"return0": [{"x": 2.0, "y": null}, {"x": 3.5, "y": 1.0}],
               "return1": {"label": "LEFT"}})
    );
}

#[test]
fn bad_args_fail_with_the_path() {
    let (result, host) = run(
        "shift",
        json!({"points": [{"x": 1}, {"x": 2}, {"x": "far"}], "by": 1, "case": "Upper"}),
    );
    assert_eq!(
        result,
        Err(RunError::Failed(
            "argument 'points[2].x': expected FLOAT, got string \"far\"".into()
        ))
    );
    assert!(host.yields().is_empty());
    let (result, _) = run(
        "shift",
        json!({"points": [{"y": 1}], "by": 1, "case": "Upper"}),
    );
    assert_eq!(
        result,
        Err(RunError::Failed(
            "argument 'points[0].x': missing; expected FLOAT".into()
        ))
    );
    let (result, _) = run("shift", json!({"points": [], "by": 1, "case": "UPPER"}));
    assert_eq!(
        result,
        Err(RunError::Failed(
            "argument 'case': expected ENUM (Upper, Lower), got string \"UPPER\"".into()
        ))
    );
    let (result, _) = run("add_numbers", json!({"b": 1}));
    assert_eq!(
        result,
        Err(RunError::Failed(
            "argument 'a': missing; expected INT".into()
        ))
    );
}

#[test]
fn errors_fail() {
    let (result, host) = run("divmod", json!({"a": 7, "b": 0}));
    assert_eq!(
        result,
        Err(RunError::Failed("cannot divide by zero".into()))
    );
    assert!(host.yields().is_empty());
}

#[test]
fn generators_yield_per_item() {
    let (result, host) = run("count", json!({"n": 3}));
    assert_eq!(result, Ok(()));
    assert_eq!(
        *host.events.borrow(),
        [
            "progress 33 None",
            r#"yield {"return0":1}"#,
            "progress 66 None",
            r#"yield {"return0":2}"#,
            "progress 100 None",
            r#"yield {"return0":3}"#,
        ]
    );

    let (result, host) = run("halves", json!({"numbers": [2, 4, 5, 6]}));
    assert_eq!(result, Err(RunError::Failed("5 is odd".into())));
    assert_eq!(host.yields(), [r#"{"return0":1}"#, r#"{"return0":2}"#]);

    let (result, _) = run("halves", json!({"numbers": []}));
    assert_eq!(result, Err(RunError::Failed("no numbers".into())));
}

#[test]
fn panics_are_critical() {
    let (result, _) = run("explode", json!({"message": "kaboom"}));
    assert_eq!(result, Err(RunError::Critical("kaboom".into())));
}
