//! Writes the fleet member's actions: `FLEET_MEMBER=3` gives `add_3`, `scale_3` and `words_3`,
//! so ten builds give ten components that one agent can serve side by side.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=FLEET_MEMBER");
    let member = std::env::var("FLEET_MEMBER").unwrap_or_else(|_| "0".into());
    assert!(
        !member.is_empty() && member.chars().all(|c| c.is_ascii_digit()),
        "FLEET_MEMBER must be a number, got '{member}'"
    );
    let mut source = String::new();
    let _ = write!(
        source,
        r#"
/// Add two numbers (fleet member {member}).
///
/// * `a` - the first summand
/// * `b` - the second summand
#[register]
fn add_{member}(a: i64, b: i64) -> i64 {{
    a.wrapping_add(b)
}}

/// Scale a list of numbers (fleet member {member}).
///
/// * `values` - the numbers
/// * `factor` - the factor
#[register]
fn scale_{member}(values: Vec<f64>, #[arg(default = 2.0)] factor: f64) -> Vec<f64> {{
    values.into_iter().map(|value| value * factor).collect()
}}

/// Split a text into words (fleet member {member}).
///
/// * `text` - the text
#[register]
fn words_{member}(text: String) -> Vec<String> {{
    text.split_whitespace().map(str::to_string).collect()
}}

rekuest_guest::export_actions!(add_{member}, scale_{member}, words_{member});
"#
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("actions.rs"), source).expect("OUT_DIR is writable");
}
