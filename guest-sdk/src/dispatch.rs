//! Dispatch: how a run reaches a `#[register]` function (the action list `export_actions!`
//! builds, the args decoded into parameters, the returns yielded) and how it fails.
//!
//! Plain Rust, independent of the WIT bindings, so that it can be tested on the host.

use std::fmt::Display;
use std::panic::{self, AssertUnwindSafe};

use serde_json::{Map, Value};

use crate::context::Context;
use crate::definition::{Definition, port};
use crate::port::{Path, Port, PortError, PortSpec, describe_value};

/// One registered action, as `#[register]` generates it and `export_actions!` lists it.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// The action's key: the function name, which a run names (its `interface` on the server).
    pub key: &'static str,
    /// Builds the definition; only `describe` calls it, so runs do not pay for it.
    pub definition: fn() -> Definition,
    /// Decodes the args, calls the function and yields its returns.
    pub run: fn(Map<String, Value>, &Context) -> Result<(), RunError>,
}

/// Implemented by `#[register]` for the function's twin in the type namespace (a braced struct
/// of the function's name): how `export_actions!` finds the action of a listed function.
pub trait Registered {
    /// The action the function is registered as.
    const ACTION: Action;
}

/// Marks a `#[register]` function that `export_actions!` lists; `#[register]` requires it
/// (through [`exported`]), so a registered function left out of the list fails the build.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has #[register] but is not listed in export_actions!",
    label = "not exported, so the component would not offer it",
    note = "add it to the crate's `rekuest_guest::export_actions!(...)`, or remove #[register]"
)]
pub trait Exported {}

/// Compiles only for a type that is [`Exported`]; `#[register]` calls it for its function.
pub const fn exported<T: Exported>() {}

/// Why a run did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// A failure meant for the caller (bad input, a domain error): FAILED.
    #[error("failed: {0}")]
    Failed(String),
    /// A bug in the action (a panic, a broken invariant): CRITICAL.
    #[error("critical: {0}")]
    Critical(String),
}

impl From<PortError> for RunError {
    fn from(error: PortError) -> Self {
        RunError::Failed(error.to_string())
    }
}

/// The failure an action's `Err(error)` becomes.
pub fn failed(error: impl Display) -> RunError {
    RunError::Failed(error.to_string())
}

/// [`arg`] for one type: takes an arg out of the args by key, with its default.
pub type ArgFn<T> = fn(&mut Map<String, Value>, &str, Option<Value>) -> Result<T, RunError>;

/// How an action's arg or return of type `T` is described, decoded and encoded
/// ([`port_fns`]).
pub struct PortFns<T> {
    /// [`port`] for `T`.
    pub port: fn(&str, Option<&str>, Option<&str>, Option<Value>) -> PortSpec,
    /// [`arg`] for `T`.
    pub arg: ArgFn<T>,
    /// [`Returns::add`] for `T`.
    pub add: fn(&mut Returns, T) -> Result<(), RunError>,
}

/// The functions of an arg or return of type `T`: the one place that requires `T: Port`, so
/// that a type that is no port is reported once.
pub const fn port_fns<T: Port>() -> PortFns<T> {
    PortFns {
        port: port::<T>,
        arg: arg::<T>,
        add: Returns::add::<T>,
    }
}

/// Takes the arg `key` out of `args`; a missing or null arg takes `default`, or `None` for an
/// `Option`.
pub fn arg<T: Port>(
    args: &mut Map<String, Value>,
    key: &str,
    default: Option<Value>,
) -> Result<T, RunError> {
    let path = Path::arg(key);
    match (args.remove(key).filter(|value| !value.is_null()), default) {
        (Some(value), _) => Ok(T::decode(value, &path)?),
        (None, Some(default)) => T::decode(default, &path)
            .map_err(|error| RunError::Critical(format!("the default of {error}"))),
        (None, None) => T::missing().ok_or_else(|| path.missing::<T>().into()),
    }
}

/// Takes the MODEL field `name` out of `fields`; a missing or null field is `None` for an
/// `Option`, an error otherwise.
pub fn field<T: Port>(
    fields: &mut Map<String, Value>,
    name: &str,
    path: &Path<'_>,
) -> Result<T, PortError> {
    let path = path.field(name);
    match fields.remove(name).filter(|value| !value.is_null()) {
        Some(value) => T::decode(value, &path),
        None => T::missing().ok_or_else(|| path.missing::<T>()),
    }
}

/// One set of returns, keyed `return0`, `return1`, ... in the order they are added.
#[derive(Debug, Default)]
pub struct Returns(Map<String, Value>);

impl Returns {
    /// No returns yet.
    pub fn new() -> Self {
        Returns::default()
    }

    /// Encodes `value` as the next return (`return0`, `return1`, ...); a value JSON cannot
    /// carry (a NaN float) is an error naming the return.
    pub fn add<T: Port>(&mut self, value: T) -> Result<(), RunError> {
        let key = format!("return{}", self.0.len());
        let value = value.encode(&Path::ret(&key))?;
        self.0.insert(key, value);
        Ok(())
    }

    /// Sends the returns to the host as one `yield-returns` JSON object.
    pub fn send(self, ctx: &Context) {
        ctx.yield_returns(&Value::Object(self.0).to_string());
    }
}

/// Yields every item of a generator, stopping early when the caller cancels.
pub fn yield_each<I: Iterator>(
    items: I,
    ctx: &Context,
    mut returns: impl FnMut(I::Item) -> Result<Returns, RunError>,
) -> Result<(), RunError> {
    for item in items {
        returns(item)?.send(ctx);
        if ctx.is_cancelled() {
            break;
        }
    }
    Ok(())
}

/// Runs the action `key` with the JSON object `args_json`; a panic becomes
/// [`RunError::Critical`] where the target unwinds (see the crate docs for wasm).
pub fn run(actions: &[Action], key: &str, args_json: &str, ctx: &Context) -> Result<(), RunError> {
    let Some(action) = actions.iter().find(|action| action.key == key) else {
        let known: Vec<&str> = actions.iter().map(|action| action.key).collect();
        return Err(RunError::Failed(format!(
            "unknown action '{key}'; this component has: {}",
            known.join(", ")
        )));
    };
    let args = match serde_json::from_str(args_json) {
        Ok(Value::Object(args)) => args,
        Ok(other) => {
            return Err(RunError::Failed(format!(
                "args must be a JSON object, got {}",
                describe_value(&other)
            )));
        }
        Err(error) => {
            return Err(RunError::Failed(format!(
                "args are not valid JSON: {error}"
            )));
        }
    };
    panic::catch_unwind(AssertUnwindSafe(|| (action.run)(args, ctx)))
        .unwrap_or_else(|payload| Err(RunError::Critical(crate::panic::message(payload))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::FakeHost;
    use crate::definition::{ActionKind, describe};
    use serde_json::json;
    use std::rc::Rc;

    fn definition() -> Definition {
        Definition {
            key: "add".into(),
            version: "1".into(),
            name: "Add".into(),
            description: Some("Adds.".into()),
            kind: ActionKind::Function,
            stateful: false,
            pure: false,
            idempotent: false,
            collections: Vec::new(),
            dependencies: Vec::new(),
            locks: Vec::new(),
            states: Vec::new(),
            args: vec![
                port::<i64>("a", Some("the first"), None, None),
                port::<i64>("b", None, Some("B"), Some(json!(3))),
            ],
            returns: vec![port::<i64>("return0", None, None, None)],
        }
    }

    fn run_add(mut args: Map<String, Value>, ctx: &Context) -> Result<(), RunError> {
        let a: i64 = arg(&mut args, "a", None)?;
        let b: i64 = arg(&mut args, "b", Some(json!(3)))?;
        if a < 0 {
            panic!("negative: {a}");
        }
        let sum = a.checked_add(b).ok_or_else(|| failed("overflow"))?;
        let mut returns = Returns::new();
        returns.add(sum)?;
        returns.send(ctx);
        Ok(())
    }

    const ADD: Action = Action {
        key: "add",
        definition,
        run: run_add,
    };

    fn run_json(args: &str) -> (Result<(), RunError>, Vec<String>) {
        let host = Rc::new(FakeHost::default());
        let result = run(&[ADD], "add", args, &Context::new(host.clone()));
        (result, host.yields())
    }

    #[test]
    fn describes_in_the_shape_of_definition_input() {
        let described: Value = serde_json::from_str(&describe(&[ADD])).expect("JSON");
        assert_eq!(
            described,
            json!([{
                "key": "add", "version": "1", "name": "Add", "description": "Adds.",
                "kind": "FUNCTION", "stateful": false, "collections": [],
                "args": [
                    {"key": "a", "kind": "INT", "nullable": false, "description": "the first"},
                    {"key": "b", "kind": "INT", "nullable": true, "default": 3, "label": "B"},
                ],
                "returns": [{"key": "return0", "kind": "INT", "nullable": false}],
            }])
        );
    }

    #[test]
    fn runs_and_yields_once() {
        let (result, yields) = run_json(r#"{"a": 1, "b": 2, "unknown": true}"#);
        assert_eq!(result, Ok(()));
        assert_eq!(yields, [r#"{"return0":3}"#]);
    }

    #[test]
    fn missing_or_null_args_take_the_default() {
        assert_eq!(run_json(r#"{"a": 1}"#).1, [r#"{"return0":4}"#]);
        assert_eq!(run_json(r#"{"a": 1, "b": null}"#).1, [r#"{"return0":4}"#]);
    }

    #[test]
    fn bad_args_fail_naming_the_port() {
        assert_eq!(
            run_json(r#"{"b": 1}"#).0,
            Err(RunError::Failed(
                "argument 'a': missing; expected INT".into()
            ))
        );
        assert_eq!(
            run_json(r#"{"a": "x"}"#).0,
            Err(RunError::Failed(
                "argument 'a': expected INT, got string \"x\"".into()
            ))
        );
        let (result, yields) = run_json(r#"{"a": 1"#);
        assert!(
            matches!(&result, Err(RunError::Failed(message)) if message.starts_with("args are not valid JSON: ")),
            "{result:?}"
        );
        assert!(yields.is_empty());
        assert_eq!(
            run_json("[1]").0,
            Err(RunError::Failed(
                "args must be a JSON object, got a list of 1 items".into()
            ))
        );
    }

    #[test]
    fn errors_fail_and_panics_are_critical() {
        assert_eq!(
            run_json(&format!(r#"{{"a": {}, "b": 1}}"#, i64::MAX)).0,
            Err(RunError::Failed("overflow".into()))
        );
        assert_eq!(
            run_json(r#"{"a": -1}"#).0,
            Err(RunError::Critical("negative: -1".into()))
        );
    }

    #[test]
    fn unknown_actions_list_the_known_ones() {
        let host = Rc::new(FakeHost::default());
        let result = run(&[ADD, ADD], "mul", "{}", &Context::new(host));
        assert_eq!(
            result,
            Err(RunError::Failed(
                "unknown action 'mul'; this component has: add, add".into()
            ))
        );
    }

    #[test]
    fn a_default_that_does_not_fit_is_a_bug() {
        let mut args = Map::new();
        let result = arg::<i64>(&mut args, "n", Some(json!("three")));
        assert_eq!(
            result,
            Err(RunError::Critical(
                "the default of argument 'n': expected INT, got string \"three\"".into()
            ))
        );
    }

    #[test]
    fn generators_stop_when_cancelled() {
        let host = Rc::new(FakeHost {
            cancel_after_yields: Some(2),
            ..FakeHost::default()
        });
        let ctx = Context::new(host.clone());
        let result = yield_each(1..=5i64, &ctx, |item| {
            let mut returns = Returns::new();
            returns.add(item)?;
            Ok(returns)
        });
        assert_eq!(result, Ok(()));
        assert_eq!(host.yields(), [r#"{"return0":1}"#, r#"{"return0":2}"#]);
    }
}
