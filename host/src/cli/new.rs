//! `rekuest-host new NAME [--python]`: a ready action project an author can build and call.
//!
//! A Rust crate is its own workspace with the `wasm` profile, so that
//! `cargo build --profile wasm --target wasm32-wasip2` works wherever it lives; it depends on
//! this checkout's `guest-sdk` by path. A Python project is a directory holding `actions.py`,
//! a unittest of it and a `build.sh` that runs this checkout's `guest-sdk/python/build.sh` on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use rekuest_host::text::OneLine;

use super::exit::Exit;

/// The SDK next to the host's sources (where `cargo install --path host` or `cargo run` built
/// this binary from).
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

/// `rekuest-host new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's name: a directory of that name is created (letters, digits, `_`, `-`;
    /// starting with a letter).
    name: String,
    /// Write a Python module (`NAME/actions.py`, a test and `NAME/build.sh`) instead of a
    /// Rust crate.
    #[arg(long)]
    python: bool,
    /// The rekuest-host checkout's `guest-sdk` directory the crate depends on (default: the
    /// one this binary was built from).
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// Writes the project into `./NAME` and says how to build and call it.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    if let Err(reason) = check_name(&args.name) {
        eprintln!(
            "error: '{}' cannot name a project: {reason}",
            OneLine(&args.name)
        );
        return Ok(Exit::Usage.into());
    }
    let dir = PathBuf::from(&args.name);
    if dir.exists() {
        eprintln!(
            "error: {} already exists; choose another name or remove it",
            OneLine(&dir.display().to_string())
        );
        return Ok(Exit::Usage.into());
    }
    let sdk = match sdk_dir(args.sdk.as_deref()) {
        Ok(sdk) => sdk,
        Err(reason) => {
            eprintln!("error: {reason}");
            return Ok(Exit::Usage.into());
        }
    };
    let files = if args.python {
        python_files(&args.name, &sdk)
    } else {
        rust_files(&args.name, &sdk)
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|ext| ext == "sh") {
            make_executable(&path)?;
        }
    }
    if args.python {
        println!(
            "Created the Python actions {name}/actions.py (and a test, {name}/test_actions.py).\n\
             Build and call them:\n\
             \x20 {name}/build.sh\n\
             \x20 rekuest-host call {name}/{name}.wasm add a=1 b=2",
            name = args.name,
        );
    } else {
        println!(
            "Created the Rust crate {name} (actions in {name}/src/lib.rs).\n\
             Build and call it:\n\
             \x20 cd {name} && cargo build --profile wasm --target wasm32-wasip2\n\
             \x20 rekuest-host call target/wasm32-wasip2/wasm/{file}.wasm add a=1 b=2",
            name = args.name,
            file = args.name.replace('-', "_"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A name usable as a directory, a crate and a component: `[A-Za-z][A-Za-z0-9_-]*`, at most
/// 64 characters.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("it is empty"),
        Some(first) if !first.is_ascii_alphabetic() => {
            return Err("it must start with a letter");
        }
        Some(_) => {}
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err("use only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// The SDK directory: `--sdk`, else the one this binary was built from.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    let (dir, origin) = match given {
        Some(dir) => (dir.to_path_buf(), "--sdk"),
        None => (
            PathBuf::from(BUILT_FROM_SDK),
            "the checkout this binary was built from",
        ),
    };
    let manifest = dir.join("Cargo.toml");
    match std::fs::read_to_string(&manifest) {
        Ok(text) if text.contains("name = \"rekuest-guest\"") => dir
            .canonicalize()
            .map_err(|error| format!("cannot resolve {}: {error}", dir.display())),
        _ => Err(format!(
            "no rekuest-guest SDK at {} ({origin}); pass --sdk DIR with the guest-sdk \
             directory of a rekuest-host checkout",
            dir.display()
        )),
    }
}

fn rust_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let sdk = toml::Value::String(sdk.display().to_string());
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
rekuest-guest = {{ path = {sdk} }}

# A workspace of its own, so that the profile below applies wherever the crate lives.
[workspace]

# `cargo build --profile wasm --target wasm32-wasip2` → target/wasm32-wasip2/wasm/{file}.wasm:
# small components that load fast.
[profile.wasm]
inherits = "release"
opt-level = "s"
lto = true
strip = true
codegen-units = 1
panic = "unwind"
"#,
        file = name.replace('-', "_"),
    );
    vec![
        ("Cargo.toml", manifest),
        (".gitignore", "/target\n".to_string()),
        ("src/lib.rs", RUST_ACTIONS.to_string()),
    ]
}

fn python_files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let build = sdk.join("python").join("build.sh");
    let script = format!(
        "#!/bin/sh\n\
         # Builds actions.py into {name}.wasm next to it with the rekuest-host Python SDK\n\
         # (needs componentize-py: python3 -m pip install componentize-py==0.25.1).\n\
         here=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\n\
         exec bash {build} \"$here\" -o \"$here/{name}.wasm\" \"$@\"\n",
        build = shell_quote(&build.display().to_string()),
    );
    vec![
        ("actions.py", PYTHON_ACTIONS.to_string()),
        ("test_actions.py", PYTHON_TEST.replace("{name}", name)),
        ("build.sh", script),
    ]
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

const RUST_ACTIONS: &str = r#"//! Rekuest actions: each `#[register]` function is one action, listed in `export_actions!`.

use rekuest_guest::prelude::*;

/// Add two numbers.
///
/// * `a` - the first summand
/// * `b` - the second summand
#[register]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Count to n, reporting progress; stops early when the caller cancels.
///
/// * `n` - how far to count
#[register]
fn count(n: i64, ctx: Context) -> impl Iterator<Item = i64> {
    (1..=n).map_while(move |i| {
        if ctx.is_cancelled() {
            return None;
        }
        ctx.progress((i * 100 / n.max(1)) as u8, None);
        Some(i)
    })
}

rekuest_guest::export_actions!(add, count);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }
}
"#;

const PYTHON_ACTIONS: &str = r#""""Rekuest actions: each `@register` function is one action."""

from typing import Iterator

from rekuest_guest import Context, register


@register
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first summand
        b: the second summand
    """
    return a + b


@register
def count(n: int, ctx: Context) -> Iterator[int]:
    """Count to n, reporting progress; stops early when the caller cancels.

    Args:
        n: how far to count
    """
    for i in range(1, n + 1):
        if ctx.is_cancelled():
            return
        ctx.progress(i * 100 // max(n, 1))
        yield i
"#;

const PYTHON_TEST: &str = r#""""Tests of the actions on a normal Python (pip install the rekuest-host guest-sdk/python).

Run: python3 -m unittest discover -s {name}
"""

import json
import unittest

import actions
from rekuest_guest import describe


class Actions(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(actions.add(1, 2), 3)

    def test_definitions(self) -> None:
        keys = [definition["key"] for definition in json.loads(describe())]
        self.assertEqual(keys, ["add", "count"])


if __name__ == "__main__":
    unittest.main()
"#;
