//! The author's loop through the `rekuest-host` binary: `inspect` and `call`, as a user runs
//! them, with the Rust and the Python twin of each example.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use rekuest_host_tests::{Sdk, component, host_command, workspace_root};
use serde_json::{Value, json};

use crate::twins::{cached_example, sdks};

fn rekuest_host(args: &[&str]) -> Output {
    host_command()
        .args(args)
        .output()
        .expect("rekuest-host runs")
}

fn example(name: &str) -> String {
    component(name).display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `call ARGS` (the component's path among them names its SDK in a failure).
fn call(args: &[&str]) -> Output {
    rekuest_host(&[&["call"], args].concat())
}

/// Runs `call` and checks the exit code and that stderr mentions `message`.
fn call_fails(args: &[&str], code: i32, message: &str) -> Output {
    let output = call(args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(message),
        "{args:?}: {}",
        stderr(&output)
    );
    output
}

#[test]
fn inspect_json_prints_the_expected_definitions_of_every_example() {
    let rust = [
        "math",
        "text",
        "generator",
        "structures",
        "hostile",
        "compute",
    ];
    let python = ["math", "generator", "text", "structures", "hostile"];
    let cases = (rust.map(|name| (Sdk::Rust, name)).into_iter())
        .chain(python.map(|name| (Sdk::Python, name)));
    for (sdk, name) in cases {
        let output = rekuest_host(&["inspect", &cached_example(sdk, name), "--json"]);
        assert!(
            output.status.success(),
            "{sdk:?} {name}: {}",
            stderr(&output)
        );
        let mut actual: Value =
            serde_json::from_slice(&output.stdout).expect("inspect --json is JSON");
        let expected_path = workspace_root()
            .join("tests/expected")
            .join(format!("{name}.json"));
        let mut expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path).expect("expected definitions exist"),
        )
        .expect("expected definitions are JSON");
        if (sdk, name) == (Sdk::Python, "hostile") {
            // The hostile twin describes the Python way of its attacks; all else is equal.
            for definitions in [&mut actual, &mut expected] {
                for definition in definitions.as_array_mut().expect("a list") {
                    definition
                        .as_object_mut()
                        .expect("an object")
                        .remove("description");
                }
            }
        }
        assert_eq!(
            actual,
            expected,
            "{sdk:?} {name} differs from {}",
            expected_path.display()
        );
    }
}

#[test]
fn definitions_carry_kinds_nullability_children_defaults_and_docs() {
    let output = rekuest_host(&["inspect", &example("text"), "--json"]);
    let definitions: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let greet = &definitions[0];
    assert_eq!(greet["key"], "greet");
    assert_eq!(greet["name"], "Greet");
    assert_eq!(greet["kind"], "FUNCTION");
    assert_eq!(
        greet["args"][1],
        json!({"key": "greeting", "kind": "STRING", "nullable": true,
               "description": "how to greet", "default": "Hello"})
    );
    assert_eq!(
        greet["args"][2]["nullable"], true,
        "Option<String> is nullable"
    );
    let change_case = &definitions[1];
    assert_eq!(change_case["args"][1]["kind"], "ENUM");
    assert_eq!(change_case["args"][1]["choices"][0]["value"], "Upper");
    let stats = &definitions[3];
    assert_eq!(stats["returns"][0]["kind"], "MODEL");
    assert_eq!(stats["returns"][0]["children"][0]["key"], "words");

    let output = rekuest_host(&["inspect", &example("generator"), "--json"]);
    let definitions: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(definitions[0]["kind"], "GENERATOR");
}

#[test]
fn inspect_shows_a_readable_table() {
    let output = rekuest_host(&["inspect", &example("math")]);
    assert!(output.status.success());
    let table = stdout(&output);
    assert!(table.starts_with("math: 7 actions"), "{table}");
    assert!(table.contains("add  (function, version 1): Add"), "{table}");
    assert!(table.contains("    a  INT  the first summand"), "{table}");
    assert!(
        table.contains("exponent  INT (optional)  the power; squares by default [default: 2]"),
        "{table}"
    );
    assert!(table.contains("values  LIST of FLOAT"), "{table}");
}

#[test]
fn inspect_lists_the_fields_of_models_below_their_port() {
    let output = rekuest_host(&["inspect", &example("structures")]);
    assert!(output.status.success());
    let table = stdout(&output);
    let expected = "\
  args:
    labelled  LIST of MODEL Labelled  the labelled images
      image   STRUCTURE @mikro/image  The image.
      label   STRING                  Its label.
";
    assert!(table.contains(expected), "{table}");
}

#[test]
fn a_crash_shows_its_panic_message_once_and_its_backtrace_only_in_the_debug_log() {
    let hostile = example("hostile");
    let output = call_fails(&[&hostile, "panic", "message=gave up"], 4, "gave up");
    let text = stderr(&output);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["error: crashed: panicked at examples/hostile/src/lib.rs:140:5: gave up"],
        "{text}"
    );
    let debug = host_command()
        .args(["call", &hostile, "panic", "message=gave up"])
        .env("REKUEST_HOST_LOG", "rekuest_host=debug")
        .output()
        .expect("rekuest-host runs");
    let text = stderr(&debug);
    assert_eq!(debug.status.code(), Some(4), "{text}");
    let crash_log = text
        .lines()
        .find(|line| line.contains("task crashed"))
        .unwrap_or_else(|| panic!("no crash in the debug log: {text}"));
    assert!(crash_log.contains(" DEBUG "), "{crash_log}");
    assert!(text.contains("wasm backtrace"), "{text}");
    assert!(!text.contains(" WARN "), "{text}");
}

/// Runs `call` and checks that it succeeds; returns stdout.
fn call_succeeds(args: &[&str]) -> String {
    let output = call(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

#[test]
fn call_prints_the_returns_keyed_like_the_wire() {
    for sdk in sdks() {
        let math = cached_example(sdk, "math");
        assert_eq!(
            call_succeeds(&[&math, "add", "a=1", "b=2"]).trim(),
            r#"{"return0":3}"#
        );
        assert_eq!(
            call_succeeds(&[&math, "divmod", "--args-json", r#"{"a": 17, "b": 5}"#]).trim(),
            r#"{"return0":3,"return1":2}"#
        );
        assert_eq!(
            call_succeeds(&[&math, "sum", "values=[1, 2.5, 3]"]).trim(),
            r#"{"return0":6.5}"#
        );
        let text = cached_example(sdk, "text");
        assert_eq!(
            call_succeeds(&[&text, "greet", "name=Ada"]).trim(),
            r#"{"return0":"Hello, Ada!"}"#
        );

        // Structures in and out as the official client sends and expects them.
        let structures = cached_example(sdk, "structures");
        for image in [
            "image=image:42",
            r#"image={"__identifier": "@mikro/image", "object": "image:42"}"#,
        ] {
            assert_eq!(
                call_succeeds(&[&structures, "crop", image, "width=10"]).trim(),
                r#"{"return0":{"__identifier":"@mikro/image","object":"image:42010"}}"#
            );
        }
        assert_eq!(
            call_succeeds(&[&structures, "images", "n=2"]).trim(),
            r#"{"return0":[{"__identifier":"@mikro/image","object":"image:1"},{"__identifier":"@mikro/image","object":"image:2"}]}"#
        );
        call_fails(
            &[
                &structures,
                "crop",
                r#"image={"__identifier": "@mikro/video", "object": "1"}"#,
                "width=10",
            ],
            2,
            "argument 'image': expected STRUCTURE @mikro/image, got a reference to @mikro/video",
        );
    }
}

#[test]
fn call_streams_a_generator_line_by_line_with_progress_and_logs() {
    for sdk in sdks() {
        let generator = cached_example(sdk, "generator");
        let output = call(&[&generator, "count", "n=3"]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(
            stdout(&output).lines().collect::<Vec<_>>(),
            [r#"{"return0":1}"#, r#"{"return0":2}"#, r#"{"return0":3}"#]
        );
        let log = stderr(&output);
        assert!(log.contains("progress 100%"), "{log}");
        assert!(log.contains("[INFO]") && log.contains("counted 3"), "{log}");
    }
}

#[test]
fn call_exits_with_the_outcome_and_a_clear_message() {
    for sdk in sdks() {
        let math = cached_example(sdk, "math");
        let hostile = cached_example(sdk, "hostile");
        call_fails(
            &[&math, "divide", "a=1", "b=0"],
            1,
            "error: failed: cannot divide by zero",
        );
        call_fails(
            &[&math, "add", "a=one", "b=2"],
            2,
            "argument 'a': 'one' is not a valid INT",
        );
        call_fails(
            &[&math, "add", "--args-json", r#"{"a": "x", "b": 2}"#],
            2,
            "argument 'a': expected INT, got string \"x\"",
        );
        call_fails(
            &[&math, "add", "a=1"],
            2,
            "argument 'b': missing; expected INT",
        );
        call_fails(
            &[&math, "subtract"],
            2,
            "has no action 'subtract'; it has: add, divide",
        );
        call_fails(&[&math, "add", "c=1"], 2, "its arguments are: a, b");
        let (crash, memory, memory_exceeded) = match sdk {
            Sdk::Rust => ("panicked at", "16MiB", "memory limit of 16 MiB exceeded"),
            // The interpreter alone needs more than 16 MiB.
            Sdk::Python => (
                "RuntimeError: gave up",
                "48MiB",
                "memory limit of 48 MiB exceeded",
            ),
        };
        call_fails(&[&hostile, "panic", "message=gave up"], 4, crash);
        call_fails(
            &[&hostile, "memory_bomb", "--memory", memory],
            3,
            memory_exceeded,
        );
        call_fails(
            &[&hostile, "spin", "--fuel", "1000000"],
            3,
            "fuel budget of 1000000 exhausted",
        );
    }
}

#[test]
fn an_infinite_loop_ends_cleanly_at_its_timeout() {
    for sdk in sdks() {
        let hostile = cached_example(sdk, "hostile");
        let started = Instant::now();
        call_fails(
            &[&hostile, "spin", "--timeout", "1s"],
            3,
            "error: limit exceeded: timeout of 1s exceeded",
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(10),
            "{sdk:?}: {elapsed:?}"
        );
    }
}

#[test]
fn files_that_are_not_action_components_are_refused_with_the_reason() {
    let dir = workspace_root().join("target").join("test-bad-components");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write scratch file");
        path.display().to_string()
    };
    let cases = [
        (
            write("text.wasm", b"hello, I am not wasm"),
            "does not start with the WebAssembly magic bytes",
        ),
        (
            write("core.wasm", b"\0asm\x01\0\0\0"),
            "is a core WebAssembly module",
        ),
        (
            write("empty.wasm", b"\0asm\x0d\0\x01\0"),
            "does not implement the arkitekt:rekuest/action-component@0.1.0 world",
        ),
        (truncated_math(&dir), "could not be compiled"),
        (
            "/no/such/file.wasm".to_string(),
            "cannot read /no/such/file.wasm",
        ),
    ];
    for (path, reason) in cases {
        let output = rekuest_host(&["inspect", &path]);
        assert_eq!(output.status.code(), Some(1), "{path}");
        assert!(
            stderr(&output).contains(reason),
            "{path}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("panicked"),
            "{path}: {}",
            stderr(&output)
        );
    }
}

fn truncated_math(dir: &Path) -> String {
    let bytes = std::fs::read(component("math")).expect("math component");
    let path = dir.join("truncated.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write truncated component");
    path.display().to_string()
}

#[test]
fn a_refused_component_is_reported_and_the_others_are_served() {
    let dir = workspace_root().join("target").join("test-bad-components");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let bad = truncated_math(&dir);
    let output = rekuest_host(&[
        "dev",
        &bad,
        &example("text"),
        "--listen",
        "127.0.0.1:0",
        "--assign",
        "greet",
        "name=Ada",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("truncated could not be compiled"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("serving the other components without it"));
    assert_eq!(stdout(&output).trim(), r#"{"return0":"Hello, Ada!"}"#);
}
