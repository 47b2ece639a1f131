//! Operator input is bounded and checked at start: component paths that are not regular files
//! or are too large, sizes with ambiguous units, memory limits a 32-bit guest cannot use,
//! limits for actions a component does not have; every error is said once.

use std::path::PathBuf;
use std::process::Output;

use rekuest_host_tests::{component, host_command, workspace_root};

fn rekuest_host(args: &[&str]) -> Output {
    host_command()
        .args(args)
        .output()
        .expect("rekuest-host runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target")
        .join("test-operator-input")
        .join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `args`, expects exit `code` and `message` on stderr, said exactly once.
fn refused(args: &[&str], code: i32, message: &str) {
    let output = rekuest_host(args);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {text}");
    assert_eq!(
        text.matches(message).count(),
        1,
        "{args:?} should say {message:?} once: {text}"
    );
}

#[test]
fn component_paths_that_are_not_regular_files_are_refused_before_reading() {
    let dir = scratch("paths");
    let dir_text = dir.display().to_string();
    // /dev/zero never ends: reading it would take all memory.
    refused(
        &["inspect", "/dev/zero"],
        1,
        "/dev/zero is not a regular file (it is a device, pipe or socket)",
    );
    refused(
        &["inspect", &dir_text],
        1,
        &format!("{dir_text} is not a regular file (it is a directory)"),
    );
    refused(
        &["call", "/dev/zero", "add", "a=1"],
        1,
        "is not a regular file",
    );
}

#[test]
fn component_files_over_the_limit_are_refused_before_reading() {
    let path = scratch("large").join("huge.wasm");
    let file = std::fs::File::create(&path).expect("create");
    // Sparse: takes no disk space, but its size is over the limit.
    let size = rekuest_host::runtime::MAX_COMPONENT_BYTES as u64 + 1;
    file.set_len(size).expect("set_len");
    drop(file);
    refused(
        &["inspect", &path.display().to_string()],
        1,
        &format!("huge is {size} bytes; components of at most"),
    );
}

#[test]
fn memory_flags_take_binary_units_within_what_a_guest_can_address() {
    let math = component("math").display().to_string();
    let call = |memory: &str| {
        let args = ["call", &math, "add", "a=1", "b=2", "--memory", memory];
        rekuest_host(&args)
    };
    // `dev` and `run` read the flag with the same rule.
    for command in [
        &["dev", &math, "--assign", "add", "a=1", "b=2"][..],
        &["run", "--url", "http://127.0.0.1:9", "--token", "t", &math],
    ] {
        let output = rekuest_host(&[command, &["--memory", "64mb"]].concat());
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {text}");
        assert_eq!(text.matches("did you mean 64MiB?").count(), 1, "{text}");
    }
    for (memory, message) in [
        ("64MB", "did you mean 64MiB?"),
        ("64mb", "did you mean 64MiB?"),
        ("512k", "did you mean 512KiB?"),
        ("5GiB", "more than a 32-bit guest can address: at most 4GiB"),
        ("64", "a bare number counts bytes"),
    ] {
        let output = call(memory);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "--memory {memory}: {text}");
        assert_eq!(
            text.matches(message).count(),
            1,
            "--memory {memory}: {text}"
        );
    }
    for memory in ["64MiB", "4GiB", "67108864"] {
        let output = call(memory);
        assert!(
            output.status.success(),
            "--memory {memory}: {}",
            stderr(&output)
        );
    }
}

/// Writes a config serving examples/math with `extra` TOML appended to its component.
fn config(name: &str, extra: &str) -> String {
    let file = scratch(name).join("rekuest-host.toml");
    let math = component("math").display().to_string();
    std::fs::write(&file, format!("[[component]]\npath = {math:?}\n{extra}\n"))
        .expect("write config");
    file.display().to_string()
}

fn dev_with(config: &str) -> Output {
    rekuest_host(&[
        "dev",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--assign",
        "add",
        "a=1",
        "b=2",
    ])
}

#[test]
fn config_values_that_cannot_work_are_refused_at_start() {
    let cases = [
        (
            "ambiguous",
            "memory = \"64MB\"",
            "`component[0].memory`: '64MB' is ambiguous (decimal or binary?): did you mean 64MiB?",
        ),
        (
            "ambiguous-lowercase",
            "memory = \"64mb\"",
            "`component[0].memory`: '64mb' is ambiguous (decimal or binary?): did you mean 64MiB?",
        ),
        (
            "bare-text-is-bytes",
            "memory = \"64\"",
            "`component[0].memory`: a memory limit of 64 B is too small",
        ),
        (
            "too-large",
            "memory = \"8GiB\"",
            "`component[0].memory`: a memory limit of 8 GiB is more than a 32-bit guest can \
             address",
        ),
        (
            "too-large-bytes",
            "memory = 8589934592",
            "a memory limit of 8 GiB is more than a 32-bit guest can address",
        ),
        (
            "unknown-action-limits",
            "[component.actions.subtract]\ntimeout = \"5s\"",
            "has no action 'subtract' (configured under [component.actions.subtract]); it has: \
             add",
        ),
        (
            "unknown-action-concurrency",
            "[component.actions.nosuch]\nconcurrency = 1",
            "has no action 'nosuch'",
        ),
    ];
    for (name, extra, message) in cases {
        let output = dev_with(&config(name, extra));
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {text}");
        assert_eq!(text.matches(message).count(), 1, "{name}: {text}");
    }
    // A known action's limits are fine.
    let output = dev_with(&config(
        "known",
        "[component.actions.add]\ntimeout = \"5s\"",
    ));
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn config_errors_are_said_once() {
    let missing = scratch("missing").join("nothing-here.toml");
    let output = rekuest_host(&["dev", "--config", &missing.display().to_string()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("cannot read it").count(), 1, "{text}");

    let broken = config("broken", "memory = ");
    let output = rekuest_host(&["dev", "--config", &broken]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("TOML parse error").count(), 1, "{text}");

    let unknown = config("unknown-key", "memroy = \"64MiB\"");
    let output = rekuest_host(&["dev", "--config", &unknown]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("unknown field `memroy`").count(), 1, "{text}");
}
