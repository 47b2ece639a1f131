//! Calls to other actions from inside a running action: [`Context::call`],
//! [`Context::call_as`] and [`Context::iterate`].

use serde_json::{Map, Value};

use crate::context::Context;
use crate::port::{Path, Port};

/// Which action to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A dependency slot the action declared (`#[register(dependency = "add")]`); the server
    /// picks the implementation.
    Dependency(String),
    /// The action with this hash.
    ActionHash(String),
    /// The action `interface` on the agent `agent` (its id).
    AgentInterface {
        /// The agent's id.
        agent: String,
        /// The action key.
        interface: String,
    },
}

impl Target {
    /// A dependency slot.
    pub fn dependency(slot: impl Into<String>) -> Self {
        Target::Dependency(slot.into())
    }
}

impl From<&str> for Target {
    /// A `&str` names a dependency slot.
    fn from(slot: &str) -> Self {
        Target::Dependency(slot.to_owned())
    }
}

/// Why a call gave no (more) returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call was not made (a cap, an unknown target, the server refused it).
    #[error("the call was refused: {0}")]
    Refused(String),
    /// The child ended FAILED.
    #[error("the called action failed: {0}")]
    Failed(String),
    /// The child ended CRITICAL.
    #[error("the called action crashed: {0}")]
    Critical(String),
    /// The child was cancelled or interrupted.
    #[error("the called action was stopped: {0}")]
    Cancelled(String),
    /// The child's returns do not fit what the caller expected.
    #[error("the called action's returns do not fit: {0}")]
    Returns(String),
}

/// A running child as the host reaches it.
pub(crate) trait ChildStream {
    /// The next returns as JSON text, `None` once the child completed.
    fn next(&mut self) -> Result<Option<String>, CallError>;
}

/// The yields of a called generator, one returns object (`{"return0": ...}`) per item; ends
/// after the child completed, or with one `Err` if it did not.
pub struct Yields {
    child: Option<Box<dyn ChildStream>>,
}

impl Iterator for Yields {
    type Item = Result<Map<String, Value>, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        let child = self.child.as_mut()?;
        let item = match child.next() {
            Ok(Some(returns)) => serde_json::from_str::<Map<String, Value>>(&returns)
                .map_err(|error| CallError::Returns(error.to_string())),
            Ok(None) => {
                self.child = None;
                return None;
            }
            Err(error) => Err(error),
        };
        if item.is_err() {
            // Dropping the child stops it if it still runs.
            self.child = None;
        }
        Some(item)
    }
}

impl Context {
    /// Calls another action with `args` (a JSON object keyed by arg port, e.g.
    /// `json!({"a": 1, "b": 2})`) and waits for its returns (`{"return0": ...}`). Blocks until
    /// the child completed; its failure is an `Err` the action may handle.
    pub fn call(
        &self,
        target: impl Into<Target>,
        args: Value,
    ) -> Result<Map<String, Value>, CallError> {
        let mut yields = self.iterate(target, args)?;
        let returns = match yields.next() {
            Some(returns) => returns?,
            None => Map::new(),
        };
        // A function yields once; wait for it to complete (or fail).
        for extra in yields {
            extra?;
        }
        Ok(returns)
    }

    /// [`call`](Self::call) for an action with one return, decoded as `T`.
    pub fn call_as<T: Port>(&self, target: impl Into<Target>, args: Value) -> Result<T, CallError> {
        let mut returns = self.call(target, args)?;
        let value = returns.remove("return0").unwrap_or(Value::Null);
        T::decode(value, &Path::ret("return0"))
            .map_err(|error| CallError::Returns(error.to_string()))
    }

    /// Calls a generator and iterates its yields as they come.
    pub fn iterate(&self, target: impl Into<Target>, args: Value) -> Result<Yields, CallError> {
        if !args.is_object() {
            return Err(CallError::Refused(
                "the args of a call must be a JSON object keyed by arg port".into(),
            ));
        }
        let child = self.host().call(&target.into(), &args.to_string())?;
        Ok(Yields { child: Some(child) })
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use serde_json::json;

    use super::*;
    use crate::context::tests::FakeHost;

    fn context(child_yields: Vec<Result<String, CallError>>) -> (Rc<FakeHost>, Context) {
        let host = Rc::new(FakeHost {
            child_yields,
            ..FakeHost::default()
        });
        (host.clone(), Context::new(host))
    }

    #[test]
    fn a_call_returns_the_childs_returns_typed() {
        let (host, ctx) = context(vec![Ok(r#"{"return0": 3}"#.into())]);
        assert_eq!(ctx.call_as::<i64>("add", json!({"a": 1, "b": 2})), Ok(3));
        assert_eq!(
            *host.events.borrow(),
            [r#"call Dependency("add") {"a":1,"b":2}"#]
        );
    }

    #[test]
    fn a_childs_failure_is_an_error_the_caller_handles() {
        let failed = CallError::Failed("cannot divide by zero".into());
        let (_, ctx) = context(vec![Err(failed.clone())]);
        assert_eq!(ctx.call("divide", json!({})), Err(failed));
        let (_, ctx) = context(vec![Ok(r#"{"return0": "x"}"#.into())]);
        assert!(matches!(
            ctx.call_as::<i64>("add", json!({})),
            Err(CallError::Returns(_))
        ));
        assert!(matches!(
            ctx.call("add", json!([1])),
            Err(CallError::Refused(_))
        ));
    }

    #[test]
    fn a_generator_is_iterated_until_it_ends() {
        let (_, ctx) = context(vec![
            Ok(r#"{"return0": 1}"#.into()),
            Ok(r#"{"return0": 2}"#.into()),
            Err(CallError::Cancelled("stopped".into())),
            Ok(r#"{"return0": 3}"#.into()),
        ]);
        let items: Vec<_> = ctx
            .iterate("count", json!({"n": 3}))
            .expect("starts")
            .collect();
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[1].as_ref().ok().map(|returns| &returns["return0"]),
            Some(&json!(2))
        );
        assert!(items[2].is_err());
    }
}
