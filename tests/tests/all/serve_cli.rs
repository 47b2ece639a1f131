//! The served path through the binary: `dev --assign`, `assign` against a local server,
//! and `run --config` with a SIGTERM shutdown.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve_support::*;
use crate::twins::{cached_example, sdks};
use rekuest_host::devserver::DevServer;
use rekuest_host_tests::tasks::image;
use rekuest_host_tests::{Sdk, host_command};

/// Runs `dev COMPONENT --listen 127.0.0.1:0 --assign ASSIGN...` with the test cache (where
/// [`cached_example`] compiled the component); the path names the twin in a failure.
fn dev_assign(component: &str, assign: &[&str], code: i32) -> Output {
    let output = host_command()
        .args(["dev", component, "--listen", "127.0.0.1:0", "--assign"])
        .args(assign)
        .output()
        .expect("rekuest-host runs");
    assert_eq!(
        output.status.code(),
        Some(code),
        "{component} {assign:?}: {}",
        text(&output.stderr)
    );
    output
}

#[test]
fn dev_assign_runs_the_whole_served_path_and_exits_with_the_outcome() {
    for sdk in sdks() {
        let math = cached_example(sdk, "math");
        let ok = dev_assign(&math, &["add", "a=1", "b=2"], 0);
        assert_eq!(text(&ok.stdout).trim(), r#"{"return0":3}"#);
        assert!(text(&ok.stderr).contains("COMPLETED"));

        let failed = dev_assign(&math, &["divide", "a=1", "b=0"], 1);
        assert!(
            text(&failed.stderr).contains("FAILED: cannot divide by zero"),
            "{}",
            text(&failed.stderr)
        );

        let bad = dev_assign(&math, &["add", "a=x"], 2);
        assert!(text(&bad.stderr).contains("'a'"));

        let counted = dev_assign(&cached_example(sdk, "generator"), &["count", "n=3"], 0);
        assert_eq!(
            text(&counted.stdout).lines().collect::<Vec<_>>(),
            [r#"{"return0":1}"#, r#"{"return0":2}"#, r#"{"return0":3}"#]
        );
        assert!(text(&counted.stderr).contains("progress 100%"));

        let crash = match sdk {
            Sdk::Rust => "CRITICAL: panicked at",
            Sdk::Python => "CRITICAL: RuntimeError: boom",
        };
        let crashed = dev_assign(
            &cached_example(sdk, "hostile"),
            &["panic", "message=boom"],
            4,
        );
        assert!(
            text(&crashed.stderr).contains(crash),
            "{}",
            text(&crashed.stderr)
        );
    }
}

/// The returns `dev --assign` printed.
fn returns(output: &Output) -> Value {
    serde_json::from_str(text(&output.stdout).trim()).expect("the returns are JSON")
}

#[test]
fn dev_assign_sends_and_prints_structures_in_the_official_clients_envelope() {
    for sdk in sdks() {
        let structures = cached_example(sdk, "structures");
        for arg in [
            "image=image:42",
            r#"image={"__identifier": "@mikro/image", "object": "image:42"}"#,
        ] {
            let cropped = dev_assign(&structures, &["crop", arg, "width=10"], 0);
            assert_eq!(
                returns(&cropped),
                json!({"return0": image("image:42010")}),
                "{arg}"
            );
        }
        let labelled = dev_assign(
            &structures,
            &[
                "by_label",
                r#"labelled=[{"__identifier": "Labelled", "label": "a",
                    "image": {"__identifier": "@mikro/image", "object": "image:1"}}]"#,
            ],
            0,
        );
        assert_eq!(
            returns(&labelled),
            json!({"return0": {"a": image("image:1")}})
        );
        let label = dev_assign(
            &structures,
            &[
                "label",
                r#"images={"b": {"__identifier": "@mikro/image", "object": "image:2"}, "a": "image:1"}"#,
            ],
            0,
        );
        assert_eq!(
            returns(&label),
            json!({"return0": [{"image": image("image:1"), "label": "a"},
                {"image": image("image:2"), "label": "b"}]})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_talks_to_a_local_server() {
    let (server, serving) = serve(&["math"]).await;
    let url = server.url();
    let output =
        tokio::task::spawn_blocking(move || host(&["assign", "--url", &url, "add", "a=40", "b=2"]))
            .await
            .expect("joins");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), r#"{"return0":42}"#);
    let url = server.url();
    let unknown = tokio::task::spawn_blocking(move || host(&["assign", "--url", &url, "nope"]))
        .await
        .expect("joins");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("offered: add"),
        "{}",
        text(&unknown.stderr)
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_streams_yields_and_keeps_its_exit_codes_through_graphql() {
    let (server, serving) = serve(&["math", "generator"]).await;
    let assign = |words: &'static [&'static str]| {
        let url = server.url();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["assign", "--url", url.as_str(), "--token", "someone"];
            args.extend_from_slice(words);
            host(&args)
        })
    };
    let counted = assign(&["count", "n=3"]).await.expect("joins");
    assert_eq!(counted.status.code(), Some(0), "{}", text(&counted.stderr));
    assert_eq!(
        text(&counted.stdout).lines().collect::<Vec<_>>(),
        [r#"{"return0":1}"#, r#"{"return0":2}"#, r#"{"return0":3}"#]
    );
    let stderr = text(&counted.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("task ") && lines[0].ends_with(" assigned"),
        "{stderr}"
    );
    assert!(lines.contains(&"ASSIGNED"), "{stderr}");
    assert!(lines.contains(&"progress 100% 3 of 3"), "{stderr}");
    assert!(lines.contains(&"[LOG] counted 2"), "{stderr}");
    assert_eq!(lines.last(), Some(&"COMPLETED"), "{stderr}");

    let failed = assign(&["divide", "a=1", "b=0"]).await.expect("joins");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stderr).contains("FAILED: "),
        "{}",
        text(&failed.stderr)
    );
    assert!(text(&failed.stdout).is_empty());

    let bad = assign(&["add", "a=x", "b=1"]).await.expect("joins");
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_a_config_file_until_sigterm() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let dir = std::env::temp_dir().join(format!("rekuest-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("rekuest-host.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\nname = \"cli\"\n\n[agent]\nconcurrency = 2\nshutdown_grace = \"2s\"\n\n[[component]]\npath = {:?}\nmemory = \"32MiB\"\ntimeout = \"10s\"\n",
            server.url(),
            example("math").display().to_string()
        ),
    )
    .expect("writes");
    let mut child = host_process(&["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let events = run(&server, "add", json!({"a": 2, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(4))]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exited = bounded("the agent to exit", async {
        loop {
            if let Some(status) = child.try_wait().expect("waits") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(exited.success(), "exit {exited:?}");
    assert!(!server.is_connected(TOKEN));
    assert!(!server.close_codes().contains(&3001));
}

#[test]
fn run_names_the_file_and_key_of_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("rekuest-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "[server]\nurl = \"http://127.0.0.1:9\"\ntoken = \"t\"\n[[component]]\npath = \"m.wasm\"\nmemory = \"a lot\"\n",
    )
    .expect("writes");
    let output = host(&["run", "--config", config.to_str().expect("utf-8")]);
    assert_ne!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("component[0].memory"), "{stderr}");

    let output = host(&["run", "--url", "http://127.0.0.1:9"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        text(&output.stderr).contains("REKUEST_TOKEN"),
        "{}",
        text(&output.stderr)
    );
}

/// Runs `args` and checks the exit code and that stderr says `message` exactly once.
fn exits(args: &[&str], code: i32, message: &str) -> Output {
    let output = host(args);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert_eq!(
        stderr.matches(message).count(),
        1,
        "{args:?} should say {message:?} once: {stderr}"
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_assign_and_dev_assign_share_one_exit_code_table() {
    let (server, serving) = serve(&["math", "hostile"]).await;
    let math = example("math").display().to_string();
    let hostile = example("hostile").display().to_string();
    let url = server.url();
    // (action words, exit code, what stderr says once); the served host and the flags below
    // give hostile 16 MiB (serve) or 64 MiB (default) of memory: memory_bomb hits either.
    let cases: [(&[&str], i32, &str); 6] = [
        (&["add", "a=1", "b=2"], 0, "COMPLETED"),
        (&["divide", "a=1", "b=0"], 1, "cannot divide by zero"),
        (&["add", "a=1"], 2, "argument 'b': missing; expected INT"),
        (
            &["add", "a=1", "b=2", "a=3"],
            2,
            "argument 'a' is given twice",
        ),
        (
            &["memory_bomb"],
            3,
            "exceeded (the task's linear memories would total",
        ),
        (&["panic", "message=gave up"], 4, "panicked at"),
    ];
    for (words, code, message) in cases {
        let component = if words[0] == "memory_bomb" || words[0] == "panic" {
            hostile.clone()
        } else {
            math.clone()
        };
        let words: Vec<String> = words.iter().map(|word| word.to_string()).collect();
        let url = url.clone();
        let outputs = tokio::task::spawn_blocking(move || {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let call = [&["call", component.as_str()][..], &words].concat();
            let dev = [&["dev", component.as_str(), "--assign"][..], &words].concat();
            let assign = [&["assign", "--url", url.as_str()][..], &words].concat();
            // `call` prints no COMPLETED: its success is the exit code and the returns.
            let call_message = if code == 0 {
                r#"{"return0":3}"#
            } else {
                message
            };
            let call_output = host(&call);
            let called = text(&call_output.stdout) + &text(&call_output.stderr);
            assert_eq!(call_output.status.code(), Some(code), "{call:?}: {called}");
            assert_eq!(
                called.matches(call_message).count(),
                1,
                "{call:?}: {called}"
            );
            exits(&dev, code, message);
            exits(&assign, code, message);
        });
        outputs.await.expect("every path exits alike");
    }
    serving.shutdown().await.expect("clean shutdown");
}

#[test]
fn dev_assign_works_while_the_default_port_is_taken() {
    // Held here, or already held by another program: taken either way.
    let _held = std::net::TcpListener::bind("127.0.0.1:8090");
    let math = example("math").display().to_string();
    let output = exits(
        &["dev", &math, "--assign", "add", "a=1", "b=2"],
        0,
        "COMPLETED",
    );
    assert_eq!(text(&output.stdout).trim(), r#"{"return0":3}"#);
    let taken = host(&["dev", &math, "--listen", "8090"]);
    assert_eq!(taken.status.code(), Some(1), "{}", text(&taken.stderr));
    assert!(
        text(&taken.stderr).contains("cannot listen on 127.0.0.1:8090"),
        "a bare port is on 127.0.0.1: {}",
        text(&taken.stderr)
    );
}

#[test]
fn dev_tells_the_url_it_listens_on_and_assign_reaches_it() {
    use std::io::{BufRead, BufReader};
    let math = example("math").display().to_string();
    // A bare port; 0 lets the system pick a free one.
    let mut child = host_process(&["dev", &math, "--listen", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().expect("piped");
    let (lines, hint) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let command = loop {
        let line = hint
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no assign hint from dev: {seen:?}"));
        if let Some(command) = line
            .split_once("e.g.: ")
            .map(|(_, command)| command.to_string())
        {
            break command;
        }
        seen.push(line);
    };
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[..3], ["rekuest-host", "assign", "--url"], "{command}");
    assert!(
        words[3].starts_with("http://127.0.0.1:") && !words[3].ends_with(":0"),
        "{command}"
    );
    assert!(
        seen.iter().any(|line| line.contains(words[3])),
        "the ready line names the same URL: {seen:?}"
    );
    let assigned = exits(
        &["assign", "--url", words[3], words[4], "a=1", "b=2"],
        0,
        "COMPLETED",
    );
    assert_eq!(text(&assigned.stdout).trim(), r#"{"return0":3}"#);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("exits").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_and_run_take_the_limit_and_grant_flags_of_call() {
    let hostile = example("hostile").display().to_string();
    let dir = std::env::temp_dir().join(format!("rekuest-grant-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("seen.txt"), "granted").expect("writes");
    let grant = format!("{}:/data", dir.display());
    let hostile_for = hostile.clone();
    tokio::task::spawn_blocking(move || {
        let hostile = hostile_for;
        let read = exits(
            &[
                "dev",
                &hostile,
                "--dir",
                &grant,
                "--env",
                "MODE=fast",
                "--assign",
            ]
            .iter()
            .copied()
            .chain(["read_file", "path=/data/seen.txt"])
            .collect::<Vec<_>>(),
            0,
            "COMPLETED",
        );
        assert_eq!(text(&read.stdout).trim(), r#"{"return0":"granted"}"#);
        let env = exits(
            &[
                "dev",
                &hostile,
                "--env",
                "MODE=fast",
                "--assign",
                "read_env",
                "name=MODE",
            ],
            0,
            "COMPLETED",
        );
        assert_eq!(text(&env.stdout).trim(), r#"{"return0":"fast"}"#);
        exits(
            &["dev", &hostile, "--timeout", "1s", "--assign", "spin"],
            3,
            "FAILED: timeout of 1s exceeded",
        );
        // Bad grants are usage errors naming the path or variable, before anything starts.
        exits(
            &["dev", &hostile, "--dir", "/nonexistent/h13:/data"],
            2,
            "/nonexistent/h13 does not exist",
        );
        exits(
            &[
                "run",
                "--url",
                "http://127.0.0.1:9",
                "--token",
                "t",
                &hostile,
                "--env",
                "REKUEST_SURELY_UNSET_H13",
            ],
            2,
            "REKUEST_SURELY_UNSET_H13 is not set in this environment",
        );
        exits(
            &["call", &hostile, "read_env", "name=X", "--dir", "/tmp:data"],
            2,
            "the guest path 'data' must be absolute",
        );
    })
    .await
    .expect("dev takes the flags");

    let server = DevServer::start(fast_server()).await.expect("server");
    let mut child = host_process(&[
        "run",
        "--url",
        &server.url(),
        "--token",
        TOKEN,
        "--memory",
        "16MiB",
    ])
    .arg(&hostile)
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("starts");
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let events = run(&server, "memory_bomb", json!({})).await;
    let failed = events.last().expect("a terminal event");
    assert_eq!(failed.kind, "FAILED", "{events:?}");
    let error = failed.fields["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("memory limit of 16 MiB exceeded"),
        "{error}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().expect("exits").success());
}
