//! Attacks on the sandbox written against the raw WIT bindings, no SDK: WASI functions called
//! directly (symlinks, hard links, piles of descriptors and streams), yields and error texts
//! no caller can take, and a self-description built to make checking args as costly as the
//! host allows. The host's tests prove that each ends as the README's security model says.

wit_bindgen::generate!({
    path: ["../../wit", "wit"],
    world: "rekuest-host:attacks/attacks",
    generate_all,
});

use arkitekt::rekuest::host::yield_returns;
use exports::arkitekt::rekuest::actions::{Guest, RunError};
use serde_json::{Value, json};
use wasi::cli::stdout::get_stdout;
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

/// UNION variants of `wide_check`'s list items: each an ENUM of [`CHOICES`] strings.
const VARIANTS: usize = 32;
/// Choices of each variant of `wide_check` (32 × 31 = 992, under the host's cap of 1,024).
const CHOICES: usize = 31;

struct Attacks;

fn port(key: &str, kind: &str) -> Value {
    json!({"key": key, "kind": kind, "nullable": false})
}

fn action(key: &str, args: Vec<Value>, returns: Vec<Value>) -> Value {
    json!({"key": key, "version": "1", "name": key, "kind": "FUNCTION",
        "args": args, "returns": returns})
}

/// The list port of `wide_check`: a LIST of a UNION of [`VARIANTS`] ENUMs.
fn wide_list() -> Value {
    let variants: Vec<Value> = (0..VARIANTS)
        .map(|variant| {
            let choices: Vec<Value> = (0..CHOICES)
                .map(|choice| json!({"value": format!("c{variant}_{choice}"), "label": "c"}))
                .collect();
            json!({"key": format!("v{variant}"), "kind": "ENUM", "nullable": false,
                "choices": choices})
        })
        .collect();
    json!({"key": "xs", "kind": "LIST", "nullable": false, "children": [
        {"key": "...", "kind": "UNION", "nullable": false, "children": variants}]})
}

impl Guest for Attacks {
    fn describe() -> String {
        let string = |key: &str| port(key, "STRING");
        let int = |key: &str| port(key, "INT");
        json!([
            action("yield_raw", vec![string("json")], vec![]),
            action("fail_with", vec![int("bytes")], vec![]),
            action(
                "symlink",
                vec![string("target"), string("link")],
                vec![string("return0")]
            ),
            action(
                "libc_symlink",
                vec![string("target"), string("link")],
                vec![string("return0")]
            ),
            action(
                "hard_link",
                vec![
                    int("from_grant"),
                    string("from"),
                    int("to_grant"),
                    string("to")
                ],
                vec![string("return0")]
            ),
            action(
                "open_raw",
                vec![int("count")],
                vec![int("return0"), string("return1")]
            ),
            action(
                "hold_files",
                vec![string("path"), int("count")],
                vec![int("return0"), string("return1")]
            ),
            action("hold_streams", vec![int("count")], vec![int("return0")]),
            action("wide_check", vec![wide_list()], vec![int("return0")]),
        ])
        .to_string()
    }

    fn run(key: String, args: String) -> Result<(), RunError> {
        let args: Value = serde_json::from_str(&args).map_err(|e| failed(e.to_string()))?;
        let text = |name: &str| args[name].as_str().unwrap_or_default().to_string();
        let number = |name: &str| args[name].as_u64().unwrap_or_default() as usize;
        let returns = match key.as_str() {
            "yield_raw" => {
                yield_returns(&text("json"));
                return Ok(());
            }
            "fail_with" => return Err(failed("E".repeat(number("bytes")))),
            "symlink" => {
                let (dir, _) = grant(0)?;
                dir.symlink_at(&text("target"), &text("link"))
                    .map_err(error_code)?;
                json!({"return0": "created"})
            }
            "libc_symlink" => {
                libc_symlink(&text("target"), &text("link")).map_err(failed)?;
                json!({"return0": "created"})
            }
            "hard_link" => {
                let (from, _) = grant(number("from_grant"))?;
                let (to, _) = grant(number("to_grant"))?;
                from.link_at(PathFlags::empty(), &text("from"), &to, &text("to"))
                    .map_err(error_code)?;
                json!({"return0": "linked"})
            }
            "open_raw" => {
                let (dir, _) = grant(0)?;
                let mut held = Vec::new();
                let mut error = String::new();
                while held.len() < number("count") {
                    match dir.open_at(
                        PathFlags::empty(),
                        ".",
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ,
                    ) {
                        Ok(descriptor) => held.push(descriptor),
                        Err(code) => {
                            error = format!("{code:?}");
                            break;
                        }
                    }
                }
                json!({"return0": held.len(), "return1": error})
            }
            "hold_files" => {
                let mut held = Vec::new();
                let mut error = String::new();
                while held.len() < number("count") {
                    match std::fs::File::open(text("path")) {
                        Ok(file) => held.push(file),
                        Err(failure) => {
                            error = failure.to_string();
                            break;
                        }
                    }
                }
                json!({"return0": held.len(), "return1": error})
            }
            "hold_streams" => {
                let held: Vec<_> = (0..number("count")).map(|_| get_stdout()).collect();
                json!({"return0": held.len()})
            }
            "wide_check" => json!({"return0": args["xs"].as_array().map_or(0, Vec::len)}),
            other => return Err(failed(format!("unknown action {other}"))),
        };
        yield_returns(&returns.to_string());
        Ok(())
    }
}

fn failed(message: impl Into<String>) -> RunError {
    RunError::Failed(message.into())
}

fn error_code(code: ErrorCode) -> RunError {
    failed(format!("{code:?}"))
}

/// The `index`th granted directory.
fn grant(index: usize) -> Result<(Descriptor, String), RunError> {
    get_directories()
        .into_iter()
        .nth(index)
        .ok_or_else(|| failed(format!("no directory grant number {index}")))
}

/// `symlink(2)` through wasi-libc, as C code would call it.
fn libc_symlink(target: &str, link: &str) -> Result<(), String> {
    unsafe extern "C" {
        fn symlink(target: *const u8, link: *const u8) -> i32;
    }
    let target = format!("{target}\0");
    let link = format!("{link}\0");
    // SAFETY: both are NUL-terminated strings that outlive the call.
    if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

export!(Attacks);
