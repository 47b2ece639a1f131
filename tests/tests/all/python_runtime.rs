//! Python action components (componentize-py, `examples/python/`) driven through the runtime
//! library, where they differ from their Rust twins (whose shared results `runtime` checks for
//! both): exceptions mapped to FAILED and CRITICAL, and the limits holding for a hostile Python
//! guest.

use std::time::{Duration, Instant};

use rekuest_host::runtime::{
    ActionComponent, Failure, LimitExceeded, Limits, LogLevel, Outcome, Runtime, TaskControl,
};
use rekuest_host_tests::Sdk;
use rekuest_host_tests::tasks::{Run, run, run_with, test_runtime};
use serde_json::json;

use crate::runtime::{action_error, load_twin};

fn runtime() -> Runtime {
    test_runtime(64)
}

async fn load(runtime: &Runtime, name: &str, limits: Limits) -> ActionComponent {
    load_twin(runtime, Sdk::Python, name, limits).await
}

fn assert_limit(run: &Run, check: impl Fn(&LimitExceeded) -> bool) {
    match &run.outcome {
        Outcome::Failed(Failure::Limit(limit)) if check(limit) => {}
        other => panic!("expected a limit failure, got {other:?}"),
    }
}

#[tokio::test]
async fn python_exceptions_are_critical_with_the_traceback_logged() {
    let runtime = runtime();
    let hostile = load(&runtime, "hostile", Limits::default()).await;
    let panic = run(&hostile, "panic", json!({"message": "the guest gave up"})).await;
    assert_eq!(
        panic.outcome,
        Outcome::Critical("RuntimeError: the guest gave up".into())
    );
    let (level, traceback) = panic.logs.last().expect("the traceback is logged");
    assert_eq!(*level, LogLevel::Critical);
    assert!(traceback.starts_with("Traceback"), "{traceback}");
    assert!(traceback.contains("in panic"), "{traceback}");
}

#[tokio::test]
async fn hostile_python_guests_end_in_clear_errors_while_a_normal_task_succeeds() {
    let runtime = runtime();
    let limits = Limits {
        fuel: None,
        memory_bytes: 32 << 20,
        // Room for the memory bomb and the deep recursion to reach 32 MiB on a loaded machine,
        // where the other tests of the binary run at the same time.
        timeout: Duration::from_secs(6),
        ..Limits::default()
    };
    let hostile = load(&runtime, "hostile", limits).await;
    let math = load(&runtime, "math", Limits::default()).await;

    let started = Instant::now();
    let (spin, bomb, recurse, sleep, passwd, env, connect, exit, add) = tokio::join!(
        run(&hostile, "spin", json!({})),
        run(&hostile, "memory_bomb", json!({})),
        run(&hostile, "recurse", json!({"depth": 100_000_000})),
        run(&hostile, "sleep", json!({"seconds": 600.0})),
        run(&hostile, "read_file", json!({"path": "/etc/passwd"})),
        run(&hostile, "env_count", json!({})),
        run(&hostile, "connect", json!({"addr": "127.0.0.1:9"})),
        run(&hostile, "exit", json!({"code": 3})),
        async {
            // Runs while the hostile tasks are busy.
            tokio::time::sleep(Duration::from_millis(300)).await;
            run(&math, "add", json!({"a": 20, "b": 22})).await
        },
    );
    assert_eq!(add.single_return(), &json!(42));
    assert_limit(&spin, |limit| {
        matches!(limit, LimitExceeded::Timeout { .. })
    });
    assert_limit(&sleep, |limit| {
        matches!(limit, LimitExceeded::Timeout { .. })
    });
    assert_limit(
        &bomb,
        |limit| matches!(limit, LimitExceeded::Memory { limit, .. } if *limit == 32 << 20),
    );
    // Python frames live in linear memory: deep recursion runs into the memory limit.
    assert_limit(&recurse, |limit| {
        matches!(limit, LimitExceeded::Memory { .. })
    });
    assert!(
        action_error(&passwd).contains("No such file"),
        "{:?}",
        passwd.outcome
    );
    assert_eq!(env.single_return(), &json!(0));
    assert!(
        action_error(&connect).starts_with("cannot connect to 127.0.0.1:9"),
        "{:?}",
        connect.outcome
    );
    assert!(
        matches!(&exit.outcome, Outcome::Critical(message) if message.contains("exit()")),
        "{:?}",
        exit.outcome
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "limits end hostile tasks promptly: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn fuel_output_and_cancel_limits_hold_for_python() {
    let runtime = runtime();
    let limits = Limits {
        fuel: Some(200_000_000),
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let hostile = load(&runtime, "hostile", limits).await;
    let started = Instant::now();
    let spin = run(&hostile, "spin", json!({})).await;
    assert_eq!(
        spin.outcome.error().as_deref(),
        Some("fuel budget of 200000000 exhausted")
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let unmetered = load(&runtime, "hostile", Limits::default()).await;
    let big = run(&unmetered, "big_yield", json!({"megabytes": 8})).await;
    assert_limit(&big, |limit| matches!(limit, LimitExceeded::Output { .. }));
    let flood = run(&unmetered, "log_flood", json!({"lines": 20_000})).await;
    assert_eq!(flood.outcome, Outcome::Completed);
    assert!(flood.logs.len() < 5_000, "{} lines", flood.logs.len());

    let control = TaskControl::new();
    let stopper = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.interrupt();
    });
    let started = Instant::now();
    let interrupted = run_with(&unmetered, "spin", json!({}), &control).await;
    assert_eq!(interrupted.outcome, Outcome::Interrupted);
    assert!(started.elapsed() < Duration::from_secs(2));
}
