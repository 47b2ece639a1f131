//! Checks that a yield is JSON the server and the Python clients can parse: finite numbers
//! (`1e999999` is refused), no lone surrogate escapes (`"\ud800"`), nesting at most
//! deep as the task's [`OutputCaps::yield_depth`](super::OutputCaps::yield_depth), and an object at the top. One pass over the text, nothing kept.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Checks `json` (see the module docs) with arrays and objects nested at most `max_depth`
/// levels (the top object is level 1); the error says what a client could not take.
pub fn check_yield_json(json: &str, max_depth: usize) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    // serde_json's own recursion limit (128) is above the default cap, so ours is the one
    // that speaks.
    let top = Checked {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut deserializer)
    .map_err(describe)?;
    deserializer.end().map_err(|error| error.to_string())?;
    match top {
        Kind::Object => Ok(()),
        Kind::Other => Err("returns must be a JSON object".into()),
    }
}

/// The reason a client could not parse the text. serde_json names a lone surrogate by how it
/// noticed it ("unexpected end of hex escape"); any hex escape error here is one, since the
/// text already parsed as JSON with its escapes unchecked.
fn describe(error: serde_json::Error) -> String {
    let text = error.to_string();
    if text.contains("hex escape") {
        format!(
            "a string holds a lone surrogate escape (\\ud800 to \\udfff without its pair) \
             at line {} column {}",
            error.line(),
            error.column()
        )
    } else {
        text
    }
}

/// Whether a checked value was an object.
enum Kind {
    Object,
    Other,
}

/// One value at `depth` levels of nesting, of at most `max_depth`.
#[derive(Clone, Copy)]
struct Checked {
    depth: usize,
    max_depth: usize,
}

impl Checked {
    fn nested<E: serde::de::Error>(self) -> Result<Checked, E> {
        let depth = self.depth + 1;
        if depth > self.max_depth {
            return Err(E::custom(format_args!(
                "nesting deeper than the limit of {} levels",
                self.max_depth
            )));
        }
        Ok(Checked { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = Kind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Kind;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Kind, E> {
        // serde_json already refuses out-of-range numbers; this keeps the promise explicit.
        if value.is_finite() {
            Ok(Kind::Other)
        } else {
            Err(E::custom("a number that is not finite"))
        }
    }

    // Strings arrive decoded: serde_json refuses lone surrogate escapes while decoding.
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Kind, A::Error> {
        let item = self.nested::<A::Error>()?;
        while items.next_element_seed(item)?.is_some() {}
        Ok(Kind::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Kind, A::Error> {
        let value = self.nested::<A::Error>()?;
        while entries
            .next_key_seed(Checked { depth: 0, ..self })?
            .is_some()
        {
            entries.next_value_seed(value)?;
        }
        if self.depth == 0 {
            Ok(Kind::Object)
        } else {
            Ok(Kind::Other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::OutputCaps;

    const MAX_YIELD_DEPTH: usize = OutputCaps::DEFAULT.yield_depth;

    #[test]
    fn accepts_what_clients_parse() {
        for json in [
            r#"{"return0": 1}"#,
            r#"{"return0": [1.5, -2e300, "\ud83d\ude00", null, true, {"a": {}}]}"#,
            r#"{}"#,
            r#"{"return0": 123456789012345678901234567890}"#,
        ] {
            assert_eq!(check_yield_json(json, MAX_YIELD_DEPTH), Ok(()), "{json}");
        }
        let deep = format!(
            "{{\"r\": {}1{}}}",
            "[".repeat(MAX_YIELD_DEPTH - 1),
            "]".repeat(MAX_YIELD_DEPTH - 1)
        );
        assert_eq!(check_yield_json(&deep, MAX_YIELD_DEPTH), Ok(()));
    }

    #[test]
    fn refuses_what_clients_cannot_parse() {
        let refused = |json: &str| check_yield_json(json, MAX_YIELD_DEPTH).expect_err(json);
        assert!(refused(r#"{"return0": 1e999999}"#).contains("number out of range"));
        assert!(refused(r#"{"return0": -1e400}"#).contains("number out of range"));
        assert!(refused(r#"{"return0": "\ud800"}"#).contains("surrogate"));
        assert!(refused(r#"{"return0": "a\udc00b"}"#).contains("surrogate"));
        assert!(refused(r#"{"\ud800": 1}"#).contains("surrogate"));
        assert!(refused(r#"{"r": NaN}"#).contains("expected value"));
        let deep = format!(
            "{{\"r\": {}1{}}}",
            "[".repeat(MAX_YIELD_DEPTH),
            "]".repeat(MAX_YIELD_DEPTH)
        );
        assert!(refused(&deep).contains("nesting deeper than the limit of 64 levels"));
        let very_deep = format!("{{\"r\": {}}}", "[".repeat(100_000));
        assert!(refused(&very_deep).contains("nesting deeper"));
        assert!(refused("[1]").contains("must be a JSON object"));
        assert!(refused(r#"{"a": 1} x"#).contains("trailing"));
    }
}
