//! A component whose self-description attacks the host, for the tests that prove a bad
//! component is refused at load while the host keeps serving the others.
//!
//! It is written against the raw WIT bindings (no SDK) so that `describe` can misbehave. The
//! environment variable `DESCRIBE` picks how: `malformed` (not JSON), `wrong-shape` (JSON, not
//! definitions), `duplicate` (two actions with one key), `huge` (2 MiB of definitions),
//! `panic`, `spin`, `escape-key` (an action key that is a terminal escape sequence),
//! `port-key` (a port key with a space), `long-key` (an action key of 2,001 characters),
//! `escape-name` (a name that clears the screen), or anything else for a valid description
//! of one action, `noop`.

wit_bindgen::generate!({ path: "../../wit", world: "action-component" });

use exports::arkitekt::rekuest::actions::{Guest, RunError};

const NOOP: &str =
    r#"{"key":"noop","version":"1","name":"Noop","kind":"FUNCTION","args":[],"returns":[]}"#;

struct HostileDescribe;

impl Guest for HostileDescribe {
    fn describe() -> String {
        match std::env::var("DESCRIBE").unwrap_or_default().as_str() {
            "malformed" => "[{\"key\": \"noop\", ".to_string(),
            "wrong-shape" => r#"{"actions": "all of them"}"#.to_string(),
            "duplicate" => format!("[{NOOP},{NOOP}]"),
            "huge" => {
                let padding = "x".repeat(2 << 20);
                format!(
                    r#"[{{"key":"noop","version":"1","name":"Noop","description":"{padding}","kind":"FUNCTION","args":[],"returns":[]}}]"#
                )
            }
            "panic" => panic!("describe gave up"),
            "spin" => {
                let mut counter = 0u64;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "escape-key" => format!(
                "[{}]",
                NOOP.replace(r#""key":"noop""#, r#""key":"\u001b]0;pwned\u0007""#)
            ),
            "port-key" => format!(
                "[{}]",
                NOOP.replace(
                    r#""args":[]"#,
                    r#""args":[{"key":"two words","kind":"INT","nullable":false}]"#,
                )
            ),
            "long-key" => format!("[{}]", NOOP.replace("noop", &"k".repeat(2001))),
            "escape-name" => format!(
                "[{}]",
                NOOP.replace(r#""name":"Noop""#, r#""name":"\u001b[2J\u001b[HNoop""#)
            ),
            _ => format!("[{NOOP}]"),
        }
    }

    fn run(_key: String, _args: String) -> Result<(), RunError> {
        arkitekt::rekuest::host::yield_returns("{}");
        Ok(())
    }
}

export!(HostileDescribe);
