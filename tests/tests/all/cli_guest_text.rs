//! Guest text cannot drive the user's terminal: logs, prints, progress, errors, yields and
//! self-descriptions reach `call`, `dev --assign` and the host's own log escaped, while the
//! values themselves stay the guest's.

use std::process::Output;

use rekuest_host_tests::{component, host_command};
use serde_json::Value;

/// What `escape_codes` sends (examples/hostile): title, clear screen, clipboard, bell, an
/// 8-bit CSI and a bidi override.
const ESCAPES: &str =
    "\u{1b}]0;pwned-title\u{7}\u{1b}[2J\u{1b}[H\u{1b}]52;c;cHduZWQ=\u{7}\u{9b}31m\u{202e}desrever";
/// The same, as the terminal shows it.
const SHOWN: &str = "\\u{1b}]0;pwned-title\\u{7}\\u{1b}[2J\\u{1b}[H\\u{1b}]52;c;cHduZWQ=\\u{7}\\u{9b}31m\\u{202e}desrever";

fn rekuest_host(args: &[&str], env: &[(&str, &str)]) -> Output {
    host_command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("rekuest-host runs")
}

fn example(name: &str) -> String {
    component(name).display().to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("the host prints UTF-8")
}

/// Fails when `output` (stdout or stderr) holds anything a terminal would act on.
fn assert_inert(what: &str, output: &str) {
    let unsafe_char = output
        .chars()
        .find(|&c| c != '\n' && rekuest_host::text::is_unsafe(c));
    assert!(
        unsafe_char.is_none(),
        "{what} carries {unsafe_char:?} to the terminal: {output:?}"
    );
}

#[test]
fn call_shows_escape_codes_of_every_channel_escaped_and_returns_the_value_unchanged() {
    let output = rekuest_host(
        &["call", &example("hostile"), "escape_codes", "fail=false"],
        &[],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_inert("stdout", &stdout);
    assert_inert("stderr", &stderr);
    for channel in ["log", "stdout", "stderr", "progress"] {
        assert!(
            stderr.contains(&format!("{channel} {SHOWN}")),
            "{channel}: {stderr}"
        );
    }
    // stdout is still JSON, and it holds exactly what the guest returned.
    let returns: Value = serde_json::from_str(stdout.trim()).expect("stdout is JSON");
    assert_eq!(returns["return0"], format!("returned {ESCAPES}"));
}

#[test]
fn call_shows_an_error_text_escaped() {
    let output = rekuest_host(
        &["call", &example("hostile"), "escape_codes", "fail=true"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_inert("stderr", &stderr);
    assert!(
        stderr.contains(&format!("error: failed: error {SHOWN}")),
        "{stderr}"
    );
}

#[test]
fn a_guest_cannot_forge_log_lines() {
    let output = rekuest_host(&["call", &example("hostile"), "forge_log_line"], &[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_inert("stderr", &stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines
            .iter()
            .any(|line| line.starts_with("[ERROR]") || line.starts_with("[CRITICAL]")),
        "a forged line starts a line: {stderr}"
    );
    assert!(lines.contains(&"[INFO] an honest line"), "{stderr}");
    assert!(
        lines.contains(&"  | [ERROR] forged by the guest"),
        "the continuation line is marked: {stderr}"
    );
    assert!(
        lines.contains(&"[INFO] printed\\r[CRITICAL] overwritten by the guest"),
        "{stderr}"
    );
}

#[test]
fn the_hosts_own_log_does_not_echo_raw_guest_text() {
    // At debug level the host logs a crash with the guest's panic message and its backtrace,
    // the trap and the describe call.
    let message = format!("message={ESCAPES}\n[ERROR] forged");
    let output = rekuest_host(
        &["call", &example("hostile"), "panic", &message],
        &[("REKUEST_HOST_LOG", "debug")],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert_inert("stderr", &stderr);
    assert!(stderr.contains("task crashed"), "{stderr}");
    assert!(stderr.contains(SHOWN), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|line| line.starts_with("[ERROR] forged")),
        "{stderr}"
    );
}

#[test]
fn dev_assign_shows_guest_text_escaped_and_the_wire_keeps_it() {
    for (fail, code) in [("false", 0), ("true", 1)] {
        let output = rekuest_host(
            &[
                "dev",
                &example("hostile"),
                "--listen",
                "127.0.0.1:0",
                "--assign",
                "escape_codes",
                &format!("fail={fail}"),
            ],
            &[],
        );
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        assert_inert("stdout", &stdout);
        assert_inert("stderr", &stderr);
        assert!(stderr.contains(&format!("log {SHOWN}")), "{stderr}");
        if fail == "true" {
            assert!(
                stderr.contains(&format!("FAILED: error {SHOWN}")),
                "{stderr}"
            );
        } else {
            // The yield went through the local server unchanged.
            let returns: Value = serde_json::from_str(stdout.trim()).expect("stdout is JSON");
            assert_eq!(returns["return0"], format!("returned {ESCAPES}"));
        }
    }
}

/// Loads examples/hostile-describe describing itself as `how`, through `call`.
fn describe_as(how: &str) -> Output {
    rekuest_host(
        &[
            "call",
            &example("hostile_describe"),
            "noop",
            "--env",
            &format!("DESCRIBE={how}"),
        ],
        &[],
    )
}

#[test]
fn self_descriptions_with_bad_keys_or_control_characters_are_refused_at_load() {
    let cases = [
        (
            "escape-key",
            "the action key \"\\u{1b}]0;pwned\\u{7}\" is not an identifier",
        ),
        (
            "port-key",
            "the port key \"two words\" is not an identifier",
        ),
        (
            "long-key",
            "the action key is 2001 characters long; at most 2000 are allowed",
        ),
        (
            "escape-name",
            "the name contains the control character '\\u{1b}'",
        ),
    ];
    for (how, reason) in cases {
        let output = describe_as(how);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{how}: {stderr}");
        assert_inert(how, &stderr);
        assert!(
            stderr.contains("hostile_describe was refused"),
            "{how}: {stderr}"
        );
        assert!(stderr.contains(reason), "{how}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{how}: said once: {stderr}");
    }
    let output = describe_as("valid");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn an_exit_is_reported_for_what_it_is() {
    let output = rekuest_host(&["call", &example("hostile"), "exit", "code=3"], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(
            "error: crashed: the action called exit() with a failure status (WASI carries no \
             exit code)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("status 1"), "{stderr}");

    let output = rekuest_host(&["call", &example("hostile"), "exit", "code=0"], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the action exited before returning its results"),
        "{stderr}"
    );
    assert!(!stderr.contains("status 0"), "{stderr}");
}

#[test]
fn a_yield_over_the_limit_names_exact_sizes() {
    let output = rekuest_host(
        &["call", &example("hostile"), "big_yield", "megabytes=4"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let message = stderr
        .lines()
        .find_map(|line| line.strip_prefix("error: limit exceeded: a yield of "))
        .unwrap_or_else(|| panic!("no yield limit message: {stderr}"));
    let (size, limit) = message
        .split_once(" exceeds the limit of ")
        .unwrap_or_else(|| panic!("{message}"));
    assert_ne!(size, limit, "{message}");
    // 4 MiB of text plus the JSON around it: not a whole number of MiB, so exact bytes.
    assert!(size.ends_with("bytes (~4.0 MiB)"), "{message}");
}
