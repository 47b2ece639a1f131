//! Ports: how Rust types describe themselves to rekuest (a [`PortSpec`] of the shared model)
//! and cross the wire as JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use serde_json::{Map, Value};

/// A port's description, as the host reads it (rekuest's `PortInput`): the shared
/// [`rekuest_definition::Port`], named `PortSpec` here beside the [`Port`] trait.
pub use rekuest_definition::Port as PortSpec;
pub use rekuest_definition::{Choice, PortError, PortKind, Side, describe_value};

/// Where a value sits: `a`, `points[2].x`, `tags["red"]`. Built on the stack while decoding.
#[derive(Debug, Clone, Copy)]
pub enum Path<'a> {
    /// A top-level arg or return port.
    Root(Side, &'a str),
    /// An item of a LIST.
    Index(&'a Path<'a>, usize),
    /// An entry of a DICT.
    Entry(&'a Path<'a>, &'a str),
    /// A field of a MODEL.
    Field(&'a Path<'a>, &'a str),
}

impl<'a> Path<'a> {
    /// The path of the arg port `key`.
    pub fn arg(key: &'a str) -> Self {
        Path::Root(Side::Argument, key)
    }

    /// The path of the return port `key`.
    pub fn ret(key: &'a str) -> Self {
        Path::Root(Side::Return, key)
    }

    /// The path of item `index` below this one.
    pub fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    /// The path of DICT entry `key` below this one.
    pub fn entry(&'a self, key: &'a str) -> Path<'a> {
        Path::Entry(self, key)
    }

    /// The path of MODEL field `name` below this one.
    pub fn field(&'a self, name: &'a str) -> Path<'a> {
        Path::Field(self, name)
    }

    /// Whether this path is inside an arg or a return.
    pub fn side(&self) -> Side {
        match self {
            Path::Root(side, _) => *side,
            Path::Index(parent, _) | Path::Entry(parent, _) | Path::Field(parent, _) => {
                parent.side()
            }
        }
    }

    /// An error at this path.
    pub fn error(&self, problem: impl Into<String>) -> PortError {
        PortError {
            side: self.side(),
            path: self.to_string(),
            problem: problem.into(),
        }
    }

    /// An error at this path: `value` does not fit `T`'s port.
    pub fn mismatch<T: Port>(&self, value: &Value) -> PortError {
        self.error(format!(
            "expected {}, got {}",
            T::port().expected(),
            describe_value(value)
        ))
    }

    /// An error at this path: a required value is missing.
    pub fn missing<T: Port>(&self) -> PortError {
        self.error(format!("missing; expected {}", T::port().expected()))
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(_, key) => f.write_str(key),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
            Path::Entry(parent, key) => write!(f, "{parent}[{key:?}]"),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
        }
    }
}

/// A type that can be an arg or return port of an action.
///
/// The SDK implements it for integers, floats, `String`, `bool`, `Vec<T>`, `Option<T>`,
/// `HashMap<String, T>`, `BTreeMap<String, T>` and every [`Structure`](crate::Structure);
/// `#[derive(Enum)]` and `#[derive(Model)]` implement it for your own types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a rekuest port",
    label = "not a port type",
    note = "ports are integers, floats, String, bool, Vec<T>, Option<T>, HashMap<String, T>, \
            BTreeMap<String, T>, `#[derive(Enum)]` and `#[derive(Model)]` types, and Structure \
            implementations"
)]
pub trait Port: Sized {
    /// The port description (its key is set by the caller).
    fn port() -> PortSpec;

    /// Reads a value from the wire.
    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError>;

    /// Writes the value to the wire.
    fn encode(self, path: &Path<'_>) -> Result<Value, PortError>;

    /// The value of a missing or null arg, if the port accepts none.
    fn missing() -> Option<Self> {
        None
    }

    /// The kinds of `#[arg(default = ...)]` literal this port takes ([`default_kinds`]
    /// bits), checked at compile time; any for ports that do not say.
    #[doc(hidden)]
    const DEFAULT_KINDS: u8 = default_kinds::ANY;
}

/// Kinds of literal an `#[arg(default = ...)]` can be, as bits of [`Port::DEFAULT_KINDS`].
#[doc(hidden)]
pub mod default_kinds {
    /// An integer literal (`3`, `-1`).
    pub const INT: u8 = 1;
    /// A float literal (`0.5`).
    pub const FLOAT: u8 = 1 << 1;
    /// A string literal.
    pub const STRING: u8 = 1 << 2;
    /// `true` or `false`.
    pub const BOOL: u8 = 1 << 3;
    /// `null`.
    pub const NULL: u8 = 1 << 4;
    /// An array literal.
    pub const LIST: u8 = 1 << 5;
    /// Every kind.
    pub const ANY: u8 = u8::MAX;
}

macro_rules! integer_ports {
    ($($int:ty),*) => {$(
        impl Port for $int {
            const DEFAULT_KINDS: u8 = default_kinds::INT;

            fn port() -> PortSpec {
                PortSpec::new(PortKind::Int)
            }

            fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
                let number = match &value {
                    Value::Number(number) => number
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| number.as_u64().map(i128::from)),
                    _ => None,
                };
                let Some(number) = number else {
                    return Err(path.mismatch::<Self>(&value));
                };
                <$int>::try_from(number).map_err(|_| {
                    path.error(format!(
                        "expected INT between {} and {}, got number {number}",
                        <$int>::MIN,
                        <$int>::MAX
                    ))
                })
            }

            fn encode(self, _path: &Path<'_>) -> Result<Value, PortError> {
                Ok(Value::from(self))
            }
        }
    )*};
}

integer_ports!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

fn encode_float(value: f64, path: &Path<'_>) -> Result<Value, PortError> {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| path.error(format!("FLOAT {value} cannot be sent as JSON")))
}

impl Port for f64 {
    const DEFAULT_KINDS: u8 = default_kinds::INT | default_kinds::FLOAT;

    fn port() -> PortSpec {
        PortSpec::new(PortKind::Float)
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        match &value {
            Value::Number(number) => number.as_f64().ok_or_else(|| path.mismatch::<Self>(&value)),
            _ => Err(path.mismatch::<Self>(&value)),
        }
    }

    fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
        encode_float(self, path)
    }
}

impl Port for f32 {
    const DEFAULT_KINDS: u8 = default_kinds::INT | default_kinds::FLOAT;

    fn port() -> PortSpec {
        PortSpec::new(PortKind::Float)
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        let wide = f64::decode(value, path)?;
        let narrow = wide as f32;
        if narrow.is_finite() {
            Ok(narrow)
        } else {
            Err(path.error(format!(
                "expected FLOAT within the range of f32, got number {wide}"
            )))
        }
    }

    fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
        // Through the shortest decimal form, so that 0.1f32 is sent as 0.1.
        let wide = self.to_string().parse::<f64>().unwrap_or(f64::from(self));
        encode_float(wide, path)
    }
}

/// `Port` for a type that is one JSON variant as it is: `String` (STRING), `bool` (BOOL).
macro_rules! plain_port {
    ($ty:ty, $kind:ident, $default:ident, $variant:ident) => {
        impl Port for $ty {
            const DEFAULT_KINDS: u8 = default_kinds::$default;

            fn port() -> PortSpec {
                PortSpec::new(PortKind::$kind)
            }

            fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
                match value {
                    Value::$variant(inner) => Ok(inner),
                    other => Err(path.mismatch::<Self>(&other)),
                }
            }

            fn encode(self, _path: &Path<'_>) -> Result<Value, PortError> {
                Ok(Value::$variant(self))
            }
        }
    };
}

plain_port!(String, String, STRING, String);
plain_port!(bool, Bool, BOOL, Bool);

impl<T: Port> Port for Option<T> {
    const DEFAULT_KINDS: u8 = T::DEFAULT_KINDS | default_kinds::NULL;

    fn port() -> PortSpec {
        PortSpec {
            nullable: true,
            ..T::port()
        }
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        match value {
            Value::Null => Ok(None),
            value => T::decode(value, path).map(Some),
        }
    }

    fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
        match self {
            Some(value) => value.encode(path),
            None => Ok(Value::Null),
        }
    }

    fn missing() -> Option<Self> {
        Some(None)
    }
}

impl<T: Port> Port for Vec<T> {
    const DEFAULT_KINDS: u8 = default_kinds::LIST;

    fn port() -> PortSpec {
        PortSpec::container(PortKind::List, T::port())
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| T::decode(item, &path.index(index)))
                .collect(),
            other => Err(path.mismatch::<Self>(&other)),
        }
    }

    fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
        self.into_iter()
            .enumerate()
            .map(|(index, item)| item.encode(&path.index(index)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }
}

fn decode_entries<T: Port, M: Port + FromIterator<(String, T)>>(
    value: Value,
    path: &Path<'_>,
) -> Result<M, PortError> {
    match value {
        Value::Object(entries) => entries
            .into_iter()
            .map(|(key, item)| {
                let item = T::decode(item, &path.entry(&key))?;
                Ok((key, item))
            })
            .collect(),
        other => Err(path.mismatch::<M>(&other)),
    }
}

fn encode_entries<T: Port>(
    entries: impl IntoIterator<Item = (String, T)>,
    path: &Path<'_>,
) -> Result<Value, PortError> {
    let mut object = Map::new();
    for (key, item) in entries {
        let item = item.encode(&path.entry(&key))?;
        object.insert(key, item);
    }
    Ok(Value::Object(object))
}

/// A DICT port for a map type with string keys and values of its parameter `T`
/// (`dict_port!([generics] Map<String, T>)`).
macro_rules! dict_port {
    ([$($generics:tt)*] $map:ty) => {
        impl<$($generics)*> Port for $map {
            // No literal is an object.
            const DEFAULT_KINDS: u8 = 0;

            fn port() -> PortSpec {
                PortSpec::container(PortKind::Dict, T::port())
            }

            fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
                decode_entries(value, path)
            }

            fn encode(self, path: &Path<'_>) -> Result<Value, PortError> {
                encode_entries(self, path)
            }
        }
    };
}

dict_port!([T: Port, S: BuildHasher + Default] HashMap<String, T, S>);
dict_port!([T: Port] BTreeMap<String, T>);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn port_json<T: Port>(key: &str) -> Value {
        serde_json::to_value(T::port().keyed(key)).expect("ports serialize")
    }

    fn decode_arg<T: Port>(value: Value) -> Result<T, String> {
        T::decode(value, &Path::arg("a")).map_err(|error| error.to_string())
    }

    #[test]
    fn scalar_ports() {
        assert_eq!(
            port_json::<i64>("a"),
            json!({"key": "a", "kind": "INT", "nullable": false})
        );
        assert_eq!(port_json::<u8>("a")["kind"], "INT");
        assert_eq!(port_json::<f32>("a")["kind"], "FLOAT");
        assert_eq!(port_json::<String>("a")["kind"], "STRING");
        assert_eq!(port_json::<bool>("a")["kind"], "BOOL");
        assert_eq!(
            port_json::<Option<f64>>("x"),
            json!({"key": "x", "kind": "FLOAT", "nullable": true})
        );
    }

    #[test]
    fn container_ports() {
        assert_eq!(
            port_json::<Vec<f64>>("values"),
            json!({"key": "values", "kind": "LIST", "nullable": false,
                "children": [{"key": "...", "kind": "FLOAT", "nullable": false}]})
        );
        assert_eq!(
            port_json::<HashMap<String, Option<i64>>>("counts"),
            json!({"key": "counts", "kind": "DICT", "nullable": false,
                "children": [{"key": "...", "kind": "INT", "nullable": true}]})
        );
        assert_eq!(
            port_json::<BTreeMap<String, Vec<bool>>>("flags")["children"][0]["children"][0]["kind"],
            "BOOL"
        );
    }

    #[test]
    fn expected_names_nested_kinds() {
        assert_eq!(<Vec<Vec<i64>>>::port().expected(), "LIST of LIST of INT");
        assert_eq!(<HashMap<String, f64>>::port().expected(), "DICT of FLOAT");
    }

    #[test]
    fn decodes_matching_values() {
        assert_eq!(decode_arg::<i64>(json!(-3)), Ok(-3));
        assert_eq!(decode_arg::<u64>(json!(u64::MAX)), Ok(u64::MAX));
        assert_eq!(decode_arg::<f64>(json!(2)), Ok(2.0));
        assert_eq!(decode_arg::<f32>(json!(0.5)), Ok(0.5));
        assert_eq!(decode_arg::<String>(json!("x")), Ok("x".to_owned()));
        assert_eq!(decode_arg::<bool>(json!(true)), Ok(true));
        assert_eq!(decode_arg::<Option<i64>>(json!(null)), Ok(None));
        assert_eq!(decode_arg::<Vec<i64>>(json!([1, 2])), Ok(vec![1, 2]));
        let counts = decode_arg::<BTreeMap<String, i64>>(json!({"a": 1})).expect("a dict");
        assert_eq!(counts.get("a"), Some(&1));
    }

    #[test]
    fn wrong_kinds_name_the_port_and_the_expected_kind() {
        assert_eq!(
            decode_arg::<i64>(json!("x")),
            Err("argument 'a': expected INT, got string \"x\"".to_owned())
        );
        assert_eq!(
            decode_arg::<i64>(json!(1.5)),
            Err("argument 'a': expected INT, got number 1.5".to_owned())
        );
        assert_eq!(
            decode_arg::<f64>(json!(true)),
            Err("argument 'a': expected FLOAT, got boolean true".to_owned())
        );
        assert_eq!(
            decode_arg::<Vec<i64>>(json!({"x": 1})),
            Err("argument 'a': expected LIST of INT, got an object".to_owned())
        );
        assert_eq!(
            decode_arg::<String>(json!(null)),
            Err("argument 'a': expected STRING, got null".to_owned())
        );
        let long = "y".repeat(100);
        let error = decode_arg::<bool>(json!(long)).expect_err("not a bool");
        assert!(error.ends_with("yyy…"), "{error}");
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            decode_arg::<u8>(json!(300)),
            Err("argument 'a': expected INT between 0 and 255, got number 300".to_owned())
        );
        assert_eq!(
            decode_arg::<u32>(json!(-1)),
            Err("argument 'a': expected INT between 0 and 4294967295, got number -1".to_owned())
        );
        assert!(decode_arg::<i64>(json!(u64::MAX)).is_err());
        assert!(decode_arg::<f32>(json!(1e300)).is_err());
    }

    #[test]
    fn nested_errors_carry_the_path() {
        assert_eq!(
            decode_arg::<Vec<Vec<i64>>>(json!([[1], [2, "x"]])),
            Err("argument 'a[1][1]': expected INT, got string \"x\"".to_owned())
        );
        assert_eq!(
            decode_arg::<HashMap<String, bool>>(json!({"red": 1})),
            Err("argument 'a[\"red\"]': expected BOOL, got number 1".to_owned())
        );
        assert_eq!(
            decode_arg::<Vec<i64>>(json!([null])),
            Err("argument 'a[0]': expected INT, got null".to_owned())
        );
    }

    #[test]
    fn encodes_values() {
        let path = Path::ret("return0");
        assert_eq!(3i64.encode(&path), Ok(json!(3)));
        assert_eq!(0.1f32.encode(&path), Ok(json!(0.1)));
        assert_eq!(Some("x".to_owned()).encode(&path), Ok(json!("x")));
        assert_eq!(None::<i64>.encode(&path), Ok(json!(null)));
        assert_eq!(vec![true].encode(&path), Ok(json!([true])));
        let counts = HashMap::from([("a".to_owned(), 1i64)]);
        assert_eq!(counts.encode(&path), Ok(json!({"a": 1})));
        assert_eq!(
            vec![1.0, f64::NAN]
                .encode(&path)
                .map_err(|error| error.to_string()),
            Err("return 'return0[1]': FLOAT NaN cannot be sent as JSON".to_owned())
        );
    }

    #[test]
    fn only_options_accept_missing_values() {
        assert_eq!(<Option<i64>>::missing(), Some(None));
        assert_eq!(i64::missing(), None);
    }
}
