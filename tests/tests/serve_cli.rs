//! The served path through the binary: `dev --assign`, `assign` against a local server,
//! and `run --config` with a SIGTERM shutdown.

mod serve_support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use rekuest_host::devserver::DevServer;
use serve_support::*;

fn host(args: &[&str]) -> Output {
    Command::new(rekuest_host_tests::host_binary())
        .args(args)
        .env_remove("REKUEST_URL")
        .env_remove("REKUEST_TOKEN")
        .env(
            "REKUEST_HOST_CACHE_DIR",
            std::env::temp_dir().join("rekuest-host-serve-tests-cache"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dev_assign_runs_the_whole_served_path_and_exits_with_the_outcome() {
    let math = example("math");
    let math = math.to_str().expect("utf-8 path");
    let listen = ["--listen", "127.0.0.1:0"];

    let ok = host(
        &[
            &["dev", math][..],
            &listen,
            &["--assign", "add", "a=1", "b=2"],
        ]
        .concat(),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout).trim(), r#"{"return0":3}"#);
    assert!(text(&ok.stderr).contains("COMPLETED"));

    let failed = host(
        &[
            &["dev", math][..],
            &listen,
            &["--assign", "divide", "a=1", "b=0"],
        ]
        .concat(),
    );
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        text(&failed.stderr).contains("FAILED: cannot divide by zero"),
        "{}",
        text(&failed.stderr)
    );

    let bad = host(&[&["dev", math][..], &listen, &["--assign", "add", "a=x"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("'a'"));

    let generator = example("generator");
    let counted = host(&[
        "dev",
        generator.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:0",
        "--assign",
        "count",
        "n=3",
    ]);
    assert_eq!(counted.status.code(), Some(0), "{}", text(&counted.stderr));
    assert_eq!(
        text(&counted.stdout).lines().collect::<Vec<_>>(),
        [r#"{"return0":1}"#, r#"{"return0":2}"#, r#"{"return0":3}"#]
    );
}

#[test]
fn dev_assign_sends_and_prints_structures_in_the_official_clients_envelope() {
    let structures = example("structures");
    let structures = structures.to_str().expect("utf-8 path");
    for image in [
        "image=image:42",
        r#"image={"__identifier": "@mikro/image", "object": "image:42"}"#,
    ] {
        let cropped = host(&[
            "dev",
            structures,
            "--listen",
            "127.0.0.1:0",
            "--assign",
            "crop",
            image,
            "width=10",
        ]);
        assert_eq!(cropped.status.code(), Some(0), "{}", text(&cropped.stderr));
        assert_eq!(
            text(&cropped.stdout).trim(),
            r#"{"return0":{"__identifier":"@mikro/image","object":"image:42010"}}"#,
            "{image}"
        );
    }
    let labelled = host(&[
        "dev",
        structures,
        "--listen",
        "127.0.0.1:0",
        "--assign",
        "by_label",
        r#"labelled=[{"__identifier": "Labelled", "label": "a",
            "image": {"__identifier": "@mikro/image", "object": "image:1"}}]"#,
    ]);
    assert_eq!(
        labelled.status.code(),
        Some(0),
        "{}",
        text(&labelled.stderr)
    );
    assert_eq!(
        text(&labelled.stdout).trim(),
        r#"{"return0":{"a":{"__identifier":"@mikro/image","object":"image:1"}}}"#
    );
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
    let mut child = Command::new(rekuest_host_tests::host_binary())
        .args(["run", "--config"])
        .arg(&config)
        .env(
            "REKUEST_HOST_CACHE_DIR",
            std::env::temp_dir().join("rekuest-host-serve-tests-cache"),
        )
        .stdin(Stdio::null())
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
