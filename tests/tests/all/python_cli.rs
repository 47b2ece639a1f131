//! Python action components through the `rekuest-host` binary, as an author uses them:
//! `inspect` shows the definitions of their Rust twins (with the Rust examples' in `cli`), `call` prints results and exits like
//! for a Rust component, and `dev --assign` serves them through a local rekuest server.

use std::process::Output;
use std::sync::{Mutex, PoisonError};

use rekuest_host_tests::{host_command, python_component, workspace_root};
use serde_json::{Value, json};

fn rekuest_host(args: &[&str]) -> Output {
    host_command()
        .args(args)
        .output()
        .expect("rekuest-host runs")
}

/// The path of the Python example `name`, compiled into the test cache by one process at a time:
/// a Python component takes ~20 s to compile, and concurrent tests would each compile it.
pub fn example(name: &str) -> String {
    static WARM: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let path = python_component(name).display().to_string();
    let mut warm = WARM.lock().unwrap_or_else(PoisonError::into_inner);
    if !warm.contains(&path) {
        let output = rekuest_host(&["inspect", &path]);
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        warm.push(path.clone());
    }
    path
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn expected_definitions(name: &str) -> Value {
    let path = workspace_root()
        .join("tests/expected")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("expected definitions exist"))
        .expect("expected definitions are JSON")
}

fn inspect_json(name: &str) -> Value {
    let output = rekuest_host(&["inspect", &example(name), "--json"]);
    assert!(output.status.success(), "{name}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("inspect --json is JSON")
}

#[test]
fn python_components_describe_themselves_exactly_like_their_rust_twins() {
    // The other twins are checked with the Rust examples (`cli`). The hostile twin describes
    // the Python way of its attacks; everything else is equal.
    let without_descriptions = |mut definitions: Value| {
        for definition in definitions.as_array_mut().expect("a list") {
            definition
                .as_object_mut()
                .expect("an object")
                .remove("description");
        }
        definitions
    };
    assert_eq!(
        without_descriptions(inspect_json("hostile")),
        without_descriptions(expected_definitions("hostile"))
    );
}

/// Runs `call` and checks the exit code; returns stdout and stderr.
fn call(args: &[&str], code: i32) -> (String, String) {
    let mut full = vec!["call"];
    full.extend_from_slice(args);
    let output = rekuest_host(&full);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {}",
        stderr(&output)
    );
    (stdout(&output), stderr(&output))
}

#[test]
fn call_runs_python_actions_with_the_exit_codes_of_rust_ones() {
    let math = example("math");
    assert_eq!(
        call(&[&math, "add", "a=1", "b=2"], 0).0,
        "{\"return0\":3}\n"
    );
    assert_eq!(
        call(&[&math, "divmod", "a=17", "b=5"], 0).0,
        "{\"return0\":3,\"return1\":2}\n"
    );
    assert_eq!(
        call(&[&math, "sum", "values=[1,2.5]"], 0).0,
        "{\"return0\":3.5}\n"
    );
    let (_, error) = call(&[&math, "divide", "a=1", "b=0"], 1);
    assert!(error.contains("cannot divide by zero"), "{error}");
    let (_, error) = call(&[&math, "add", "--args-json", r#"{"a": "x", "b": 2}"#], 2);
    assert!(
        error.contains("argument 'a': expected INT, got string \"x\""),
        "{error}"
    );

    let generator = example("generator");
    let (out, error) = call(&[&generator, "count", "n=3"], 0);
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        lines,
        [
            json!({"return0": 1}),
            json!({"return0": 2}),
            json!({"return0": 3})
        ]
    );
    assert!(error.contains("counted 3"), "{error}");

    let hostile = example("hostile");
    let (_, error) = call(&[&hostile, "spin", "--timeout", "1s"], 3);
    assert!(error.contains("timeout of 1s exceeded"), "{error}");
    let (_, error) = call(&[&hostile, "memory_bomb", "--memory", "48MiB"], 3);
    assert!(error.contains("memory limit of 48 MiB exceeded"), "{error}");
    let (_, error) = call(&[&hostile, "panic", "message=boom"], 4);
    assert!(error.contains("RuntimeError: boom"), "{error}");
}

/// Runs `dev COMPONENT --assign ...` on a free loopback port; returns stdout and stderr.
fn dev_assign(component: &str, assign: &[&str], code: i32) -> (String, String) {
    let mut args = vec!["dev", component, "--listen", "127.0.0.1:0", "--assign"];
    args.extend_from_slice(assign);
    let output = rekuest_host(&args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{assign:?}: {}",
        stderr(&output)
    );
    (stdout(&output), stderr(&output))
}

#[test]
fn python_actions_are_served_through_a_local_rekuest_server() {
    let (out, events) = dev_assign(&example("math"), &["add", "a=1", "b=2"], 0);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).expect("the yield is JSON"),
        json!({"return0": 3})
    );
    assert!(events.contains("COMPLETED"), "{events}");

    let (out, events) = dev_assign(&example("generator"), &["count", "n=2"], 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(events.contains("progress 100%"), "{events}");

    let (out, _) = dev_assign(
        &example("structures"),
        &[
            "label",
            r#"images={"b": {"__identifier": "@mikro/image", "object": "image:2"}, "a": "image:1"}"#,
        ],
        0,
    );
    let image = |reference: &str| json!({"__identifier": "@mikro/image", "object": reference});
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).expect("the yield is JSON"),
        json!({"return0": [{"image": image("image:1"), "label": "a"},
            {"image": image("image:2"), "label": "b"}]})
    );

    let (_, events) = dev_assign(&example("math"), &["divide", "a=1", "b=0"], 1);
    assert!(events.contains("FAILED: cannot divide by zero"), "{events}");
    let (_, events) = dev_assign(&example("hostile"), &["panic", "message=boom"], 4);
    assert!(events.contains("CRITICAL: RuntimeError: boom"), "{events}");
}
