//! Structures: objects that live elsewhere and cross the wire as reference strings.

use serde_json::Value;

use crate::port::{Path, Port, PortError, PortKind, PortSpec, default_kinds};

/// An object that lives outside the action (an image in mikro, a file in a store, ...) and
/// travels as a reference string, e.g. `"image:42"`.
///
/// Implementing this trait makes the type a STRUCTURE port: args arrive as the reference and
/// are [expanded](Structure::expand) before the action runs (an error fails the task, naming
/// the port); returned values are [shrunk](Structure::shrink) to their reference.
///
/// On the wire a structure travels in the envelope of the official client,
/// `{"__identifier": "@mikro/image", "object": "image:42"}`; the host opens it before the
/// action runs and wraps returned references in it, so an action only handles references.
///
/// ```
/// use rekuest_guest::Structure;
///
/// /// An image in mikro.
/// struct Image {
///     id: u64,
/// }
///
/// impl Structure for Image {
///     const IDENTIFIER: &'static str = "@mikro/image";
///
///     fn shrink(&self) -> String {
///         format!("image:{}", self.id)
///     }
///
///     fn expand(reference: &str) -> Result<Self, String> {
///         let id = reference
///             .strip_prefix("image:")
///             .and_then(|id| id.parse().ok())
///             .ok_or_else(|| format!("not an image reference: {reference:?}"))?;
///         Ok(Image { id })
///     }
/// }
/// ```
pub trait Structure: Sized {
    /// The structure's identifier in rekuest, e.g. `@mikro/image`.
    const IDENTIFIER: &'static str;

    /// The reference string that stands for this object on the wire.
    fn shrink(&self) -> String;

    /// The object a reference string stands for; the error says why there is none.
    fn expand(reference: &str) -> Result<Self, String>;
}

// Not recommended in errors: a type that is no port is reported as such, not as a missing
// `Structure` implementation.
#[diagnostic::do_not_recommend]
impl<S: Structure> Port for S {
    // A reference string (or number).
    const DEFAULT_KINDS: u8 = default_kinds::STRING | default_kinds::INT;

    fn port() -> PortSpec {
        PortSpec::new(PortKind::Structure).identified(S::IDENTIFIER)
    }

    fn decode(value: Value, path: &Path<'_>) -> Result<Self, PortError> {
        let reference = match value {
            Value::String(reference) => reference,
            Value::Number(number) => number.to_string(),
            other => return Err(path.mismatch::<Self>(&other)),
        };
        S::expand(&reference).map_err(|reason| {
            path.error(format!(
                "cannot expand STRUCTURE {} from {reference:?}: {reason}",
                S::IDENTIFIER
            ))
        })
    }

    fn encode(self, _path: &Path<'_>) -> Result<Value, PortError> {
        Ok(Value::String(self.shrink()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq)]
    struct Image(u32);

    impl Structure for Image {
        const IDENTIFIER: &'static str = "@mikro/image";

        fn shrink(&self) -> String {
            format!("image:{}", self.0)
        }

        fn expand(reference: &str) -> Result<Self, String> {
            reference
                .strip_prefix("image:")
                .and_then(|id| id.parse().ok())
                .map(Image)
                .ok_or_else(|| "expected image:<id>".to_owned())
        }
    }

    #[test]
    fn structure_ports_carry_the_identifier() {
        assert_eq!(
            serde_json::to_value(Image::port().keyed("image")).expect("serializes"),
            json!({"key": "image", "kind": "STRUCTURE", "nullable": false,
                "identifier": "@mikro/image"})
        );
        assert_eq!(
            serde_json::to_value(<Vec<Image>>::port().keyed("images")).expect("serializes")["children"]
                [0]["identifier"],
            "@mikro/image"
        );
    }

    #[test]
    fn expands_and_shrinks_references() {
        let path = Path::arg("image");
        assert_eq!(Image::decode(json!("image:7"), &path), Ok(Image(7)));
        assert_eq!(Image(8).encode(&path), Ok(json!("image:8")));
        let error = Image::decode(json!("video:7"), &path).expect_err("malformed");
        assert_eq!(
            error.to_string(),
            "argument 'image': cannot expand STRUCTURE @mikro/image from \"video:7\": \
             expected image:<id>"
        );
        let error = Image::decode(json!(true), &path).expect_err("not a reference");
        assert_eq!(
            error.to_string(),
            "argument 'image': expected STRUCTURE @mikro/image, got boolean true"
        );
    }
}
