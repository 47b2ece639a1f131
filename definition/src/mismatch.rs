//! How a value that does not fit its port is reported, on either side of the sandbox.

use std::fmt;

use serde_json::Value;

/// Whether a value travels into an action (an arg) or out of it (a return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// An argument of the action.
    Argument,
    /// A return of the action.
    Return,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Argument => "argument",
            Side::Return => "return",
        })
    }
}

/// A value that does not fit its port: `argument 'points[2].x': expected FLOAT, got string "x"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side} '{path}': {problem}")]
pub struct PortError {
    /// Arg or return.
    pub side: Side,
    /// Where the value sits: `a`, `points[2].x`, `tags["red"]`.
    pub path: String,
    /// What is wrong, naming the expected kind (see [`Port::expected`](crate::Port::expected)).
    pub problem: String,
}

/// Names a JSON value's type for error messages, with an excerpt of at most 40 characters:
/// `number 1.5`, `string "abc"`, `a list of 3 items`, `an object`.
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => format!("boolean {flag}"),
        Value::Number(number) => format!("number {number}"),
        Value::String(text) => {
            let quoted = format!("{text:?}");
            if quoted.chars().count() > 40 {
                format!("string {}…", quoted.chars().take(40).collect::<String>())
            } else {
                format!("string {quoted}")
            }
        }
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_named_with_a_short_excerpt() {
        assert_eq!(describe_value(&json!(null)), "null");
        assert_eq!(describe_value(&json!(true)), "boolean true");
        assert_eq!(describe_value(&json!(1.5)), "number 1.5");
        assert_eq!(describe_value(&json!("x")), "string \"x\"");
        assert_eq!(describe_value(&json!([1, 2])), "a list of 2 items");
        assert_eq!(describe_value(&json!({"a": 1})), "an object");
        let long = describe_value(&json!("y".repeat(100)));
        assert_eq!(long, format!("string \"{}…", "y".repeat(39)));
    }

    #[test]
    fn errors_name_the_side_and_the_path() {
        let error = PortError {
            side: Side::Return,
            path: "return0[1]".into(),
            problem: "FLOAT NaN cannot be sent as JSON".into(),
        };
        assert_eq!(
            error.to_string(),
            "return 'return0[1]': FLOAT NaN cannot be sent as JSON"
        );
    }
}
