//! The sandbox's guarantees, each proven with a hostile guest: files only through grants
//! (no `..` or symlink escapes, read-only means read-only), environment only as listed, no
//! sockets, and host memory that stays bounded however often guests blow their limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rekuest_host::error_chain::ErrorChain;
use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, DirGrant, Failure, LimitExceeded, Limits, Outcome,
    Runtime, RuntimeConfig, SandboxPolicy,
};
use rekuest_host_tests::tasks::{action_error, run};
use rekuest_host_tests::{component, resident_bytes, test_cache_dir, workspace_root};
use serde_json::{Value, json};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        allocation: Allocation::Pooling {
            slots: 16,
            max_memory_bytes: 64 << 20,
        },
        cache: Some(ComponentCache::new(test_cache_dir())),
        fuel: true,
    })
    .expect("runtime starts")
}

async fn hostile(runtime: &Runtime, policy: SandboxPolicy) -> ActionComponent {
    runtime
        .load_file(&component("hostile"), policy)
        .await
        .expect("hostile loads")
}

/// Runs a task; returns its single return (or null) and its outcome.
async fn call(component: &ActionComponent, action: &str, args: Value) -> (Value, Outcome) {
    let run = run(component, action, args).await;
    (run.last_return0(), run.outcome)
}

/// A fresh scratch directory: `data/` (with `hello.txt` and escape attempts), `out/`, and a
/// `secret.txt` beside them that no grant covers.
fn scratch(name: &str) -> PathBuf {
    let root = workspace_root()
        .join("target")
        .join("test-sandbox")
        .join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("data")).expect("data dir");
    std::fs::create_dir_all(root.join("out")).expect("out dir");
    std::fs::write(root.join("data/hello.txt"), "hi from the host").expect("hello");
    std::fs::write(root.join("secret.txt"), "do not read").expect("secret");
    std::os::unix::fs::symlink("../secret.txt", root.join("data/escape")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("data/passwd")).expect("symlink");
    root
}

fn grant(host: &Path, guest: &str, writable: bool) -> DirGrant {
    DirGrant {
        host: host.to_path_buf(),
        guest: guest.to_string(),
        writable,
    }
}

#[tokio::test]
async fn nothing_on_the_host_is_visible_without_a_grant() {
    let runtime = runtime();
    let guest = hostile(&runtime, SandboxPolicy::default()).await;
    let (_, outcome) = call(&guest, "read_file", json!({"path": "/etc/passwd"})).await;
    assert!(action_error(&outcome).contains("cannot read /etc/passwd"));
    let (_, outcome) = call(&guest, "list_dir", json!({"path": "/"})).await;
    assert!(action_error(&outcome).contains("cannot list /"));
    let (_, outcome) = call(
        &guest,
        "write_file",
        json!({"path": "/tmp/pwned", "content": "x"}),
    )
    .await;
    assert!(action_error(&outcome).contains("cannot write /tmp/pwned"));
    assert!(!Path::new("/tmp/pwned").exists());
}

#[tokio::test]
async fn a_read_only_grant_can_be_read_but_not_escaped_or_written() {
    let root = scratch("read-only");
    let runtime = runtime();
    let policy = SandboxPolicy {
        dirs: vec![grant(&root.join("data"), "/data", false)],
        ..SandboxPolicy::default()
    };
    let guest = hostile(&runtime, policy).await;

    let (text, outcome) = call(&guest, "read_file", json!({"path": "/data/hello.txt"})).await;
    assert_eq!(
        (text, outcome),
        (json!("hi from the host"), Outcome::Completed)
    );
    let (names, outcome) = call(&guest, "list_dir", json!({"path": "/data"})).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(names, json!(["escape", "hello.txt", "passwd"]));

    for escape in [
        "/data/../secret.txt",
        "/data/escape",
        "/data/passwd",
        "/data/../../../../etc/passwd",
    ] {
        let (_, outcome) = call(&guest, "read_file", json!({"path": escape})).await;
        assert!(
            action_error(&outcome).contains("cannot read"),
            "{escape}: {outcome:?}"
        );
    }
    let (_, outcome) = call(
        &guest,
        "write_file",
        json!({"path": "/data/new.txt", "content": "x"}),
    )
    .await;
    assert!(
        action_error(&outcome).contains("cannot write"),
        "{outcome:?}"
    );
    assert!(!root.join("data/new.txt").exists());
    let (_, outcome) = call(
        &guest,
        "write_file",
        json!({"path": "/data/hello.txt", "content": "x"}),
    )
    .await;
    assert!(
        action_error(&outcome).contains("cannot write"),
        "{outcome:?}"
    );
    let unchanged = std::fs::read_to_string(root.join("data/hello.txt")).expect("hello");
    assert_eq!(unchanged, "hi from the host");
}

#[tokio::test]
async fn a_read_write_grant_takes_writes_inside_it_only() {
    let root = scratch("read-write");
    let runtime = runtime();
    let policy = SandboxPolicy {
        dirs: vec![grant(&root.join("out"), "/out", true)],
        ..SandboxPolicy::default()
    };
    let guest = hostile(&runtime, policy).await;
    let (_, outcome) = call(
        &guest,
        "write_file",
        json!({"path": "/out/result.txt", "content": "42"}),
    )
    .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        std::fs::read_to_string(root.join("out/result.txt")).expect("written"),
        "42"
    );
    let (_, outcome) = call(
        &guest,
        "write_file",
        json!({"path": "/out/../secret.txt", "content": "x"}),
    )
    .await;
    assert!(
        action_error(&outcome).contains("cannot write"),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("secret.txt")).expect("secret"),
        "do not read"
    );
}

#[tokio::test]
async fn only_listed_environment_variables_are_visible() {
    let runtime = runtime();
    let guest = hostile(&runtime, SandboxPolicy::default()).await;
    assert_eq!(
        call(&guest, "env_count", json!({})).await,
        (json!(0), Outcome::Completed)
    );
    assert_eq!(
        call(&guest, "read_env", json!({"name": "PATH"})).await,
        (Value::Null, Outcome::Completed)
    );

    let policy = SandboxPolicy {
        env: vec![("INSTRUMENT".into(), "microscope-3".into())],
        ..SandboxPolicy::default()
    };
    let guest = hostile(&runtime, policy).await;
    assert_eq!(
        call(&guest, "env_count", json!({})).await,
        (json!(1), Outcome::Completed)
    );
    assert_eq!(
        call(&guest, "read_env", json!({"name": "INSTRUMENT"})).await,
        (json!("microscope-3"), Outcome::Completed)
    );
}

#[tokio::test]
async fn guests_cannot_open_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let address = listener.local_addr().expect("address").to_string();
    let runtime = runtime();
    let guest = hostile(&runtime, SandboxPolicy::default()).await;
    let (_, outcome) = call(&guest, "connect", json!({"addr": address})).await;
    assert!(
        action_error(&outcome).contains("cannot connect"),
        "{outcome:?}"
    );
    assert!(listener.accept().is_err(), "nothing reached the listener");
}

#[tokio::test]
async fn an_exiting_guest_is_reported_not_obeyed() {
    let runtime = runtime();
    let guest = hostile(&runtime, SandboxPolicy::default()).await;
    // WASI preview 2 only tells success from failure: any non-zero status arrives as 1, so
    // the report names no status it cannot know.
    for code in [3, 1, -1, 255] {
        let (_, outcome) = call(&guest, "exit", json!({ "code": code })).await;
        assert_eq!(
            outcome,
            Outcome::Critical(
                "the action called exit() with a failure status (WASI carries no exit code)".into()
            ),
            "exit({code})"
        );
    }
    // A successful exit still skips the results the action owes: a broken contract.
    let (returns, outcome) = call(&guest, "exit", json!({"code": 0})).await;
    assert_eq!(returns, Value::Null);
    assert_eq!(
        outcome,
        Outcome::Critical(
            "the action exited before returning its results (it called exit() with a success \
             status instead of returning)"
                .into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_memory_stays_bounded_across_a_thousand_memory_bombs() {
    if !crate::alone::in_own_process(
        "sandbox::host_memory_stays_bounded_across_a_thousand_memory_bombs",
    ) {
        return;
    }
    let runtime = runtime();
    let policy = SandboxPolicy {
        limits: Limits {
            memory_bytes: 8 << 20,
            timeout: Duration::from_secs(10),
            fuel: None,
            ..Limits::default()
        },
        ..SandboxPolicy::default()
    };
    let guest = std::sync::Arc::new(hostile(&runtime, policy).await);
    let bomb = |guest: std::sync::Arc<ActionComponent>| async move {
        let (_, outcome) = call(&guest, "memory_bomb", json!({})).await;
        assert!(
            matches!(
                outcome,
                Outcome::Failed(Failure::Limit(LimitExceeded::Memory { .. }))
            ),
            "{outcome:?}"
        );
    };
    for _ in 0..20 {
        bomb(guest.clone()).await;
    }
    let before = resident_bytes("self");
    for _ in 0..500 {
        let (first, second) = tokio::join!(
            tokio::spawn(bomb(guest.clone())),
            tokio::spawn(bomb(guest.clone()))
        );
        first.expect("task");
        second.expect("task");
    }
    let after = resident_bytes("self");
    let growth = after.saturating_sub(before);
    println!(
        "RSS before {} MiB, after 1,000 memory bombs {} MiB",
        before >> 20,
        after >> 20
    );
    assert!(growth < 32 << 20, "host RSS grew by {} MiB", growth >> 20);
}

#[tokio::test]
async fn broken_self_descriptions_are_refused_while_other_components_keep_working() {
    let runtime = runtime();
    let math = runtime
        .load_file(&component("math"), SandboxPolicy::default())
        .await
        .expect("math loads");
    let cases = [
        (
            "malformed",
            "self-description is not a JSON list of action definitions",
        ),
        (
            "wrong-shape",
            "self-description is not a JSON list of action definitions",
        ),
        ("duplicate", "action key 'noop' is described twice"),
        ("huge", "at most 1048576 are allowed"),
        ("panic", "its describe() call did not complete: panicked at"),
        ("spin", "its describe() call did not complete: fuel budget"),
    ];
    for (mode, reason) in cases {
        let policy = SandboxPolicy {
            env: vec![("DESCRIBE".into(), mode.into())],
            ..SandboxPolicy::default()
        };
        let error = match runtime
            .load_file(&component("hostile_describe"), policy)
            .await
        {
            Ok(_) => panic!("{mode}: a broken description was accepted"),
            Err(error) => ErrorChain(&error).to_string(),
        };
        assert!(
            error.starts_with("hostile_describe was refused: "),
            "{mode}: {error}"
        );
        assert!(error.contains(reason), "{mode}: {error}");
        assert_eq!(
            call(&math, "add", json!({"a": 2, "b": 3})).await,
            (json!(5), Outcome::Completed),
            "math still works after {mode}"
        );
    }
    let valid = runtime
        .load_file(&component("hostile_describe"), SandboxPolicy::default())
        .await
        .expect("the same component with a valid description loads");
    assert_eq!(valid.definitions()[0].key, "noop");
}
