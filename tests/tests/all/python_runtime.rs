//! Python action components (componentize-py, `examples/python/`) driven through the runtime
//! library: the same results as their Rust twins, exceptions mapped to FAILED and CRITICAL, and
//! the same limits holding for a hostile Python guest.

use std::time::{Duration, Instant};

use rekuest_host::runtime::{
    ActionComponent, Failure, LimitExceeded, Limits, LogLevel, Outcome, Runtime, SandboxPolicy,
    TaskControl,
};
use rekuest_host_tests::python_component;
use rekuest_host_tests::tasks::{
    Run, assert_structures_travel_in_envelopes, run, run_with, test_runtime,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn runtime() -> Runtime {
    test_runtime(64)
}

/// Loads one at a time: a Python component takes ~20 s to compile when it is not cached yet,
/// and tests loading it at once would each compile it.
static LOADING: Mutex<()> = Mutex::const_new(());

async fn load(runtime: &Runtime, name: &str, limits: Limits) -> ActionComponent {
    let path = tokio::task::spawn_blocking({
        let name = name.to_owned();
        move || python_component(&name)
    })
    .await
    .expect("the Python components build");
    let policy = SandboxPolicy {
        limits,
        ..SandboxPolicy::default()
    };
    let _loading = LOADING.lock().await;
    runtime
        .load_file(&path, policy)
        .await
        .unwrap_or_else(|error| panic!("python {name} loads: {error}"))
}

fn single_return(run: &Run) -> &Value {
    run.single_return()
}

fn action_error(run: &Run) -> &str {
    match &run.outcome {
        Outcome::Failed(Failure::Action(message)) => message,
        other => panic!("expected the action to fail, got {other:?}"),
    }
}

fn assert_limit(run: &Run, check: impl Fn(&LimitExceeded) -> bool) {
    match &run.outcome {
        Outcome::Failed(Failure::Limit(limit)) if check(limit) => {}
        other => panic!("expected a limit failure, got {other:?}"),
    }
}

#[tokio::test]
async fn python_math_returns_the_results_of_the_rust_math() {
    let runtime = runtime();
    let math = load(&runtime, "math", Limits::default()).await;
    for (action, args, expected) in [
        ("add", json!({"a": 1, "b": 2}), json!(3)),
        ("add", json!({"a": i64::MAX, "b": 1}), json!(i64::MIN)),
        ("divide", json!({"a": 7, "b": 2}), json!(3.5)),
        ("sum", json!({"values": [1, 2.5]}), json!(3.5)),
        ("power", json!({"base": 3}), json!(9.0)),
        ("power", json!({"base": 2, "exponent": 10}), json!(1024.0)),
        ("clamp", json!({"value": 5, "max": 3}), json!(3)),
        ("clamp", json!({"value": 5, "min": null}), json!(5)),
    ] {
        let result = run(&math, action, args.clone()).await;
        assert_eq!(single_return(&result), &expected, "{action} {args}");
    }
    let divmod = run(&math, "divmod", json!({"a": -17, "b": 5})).await;
    assert_eq!(divmod.yields, [json!({"return0": -3, "return1": -2})]);
    let by_zero = run(&math, "divide", json!({"a": 1, "b": 0})).await;
    assert_eq!(action_error(&by_zero), "cannot divide by zero");
    assert!(by_zero.yields.is_empty());
    let empty = run(&math, "mean", json!({"values": []})).await;
    assert_eq!(action_error(&empty), "cannot average an empty list");
    let wrong_kind = run(&math, "add", json!({"a": "one", "b": 2})).await;
    assert_eq!(
        wrong_kind.outcome,
        Outcome::Failed(Failure::InvalidArgs(
            "argument 'a': expected INT, got string \"one\"".into()
        ))
    );
}

#[tokio::test]
async fn python_text_and_structures_use_defaults_enums_models_and_references() {
    let runtime = runtime();
    let text = load(&runtime, "text", Limits::default()).await;
    let greeting = run(&text, "greet", json!({"name": "Ada"})).await;
    assert_eq!(single_return(&greeting), &json!("Hello, Ada!"));
    let custom = run(
        &text,
        "greet",
        json!({"name": "Ada", "greeting": "Hi", "punctuation": "?"}),
    )
    .await;
    assert_eq!(single_return(&custom), &json!("Hi, Ada?"));
    let title = run(
        &text,
        "change_case",
        json!({"text": "hello wORLD", "case": "Title"}),
    )
    .await;
    assert_eq!(single_return(&title), &json!("Hello World"));
    let counts = run(&text, "count_words", json!({"text": "The cat, the hat."})).await;
    assert_eq!(
        single_return(&counts),
        &json!({"the": 2, "cat": 1, "hat": 1})
    );
    let stats = run(&text, "stats", json!({"text": "one two\nthree"})).await;
    assert_eq!(
        single_return(&stats),
        &json!({"words": 3, "chars": 13, "lines": 2})
    );
    let summary = run(
        &text,
        "summarize",
        json!({"stats": {"words": 3, "chars": 13, "lines": 2}}),
    )
    .await;
    assert_eq!(
        single_return(&summary),
        &json!("3 words, 13 characters, 2 lines")
    );
    let repeated = run(&text, "repeat", json!({"text": "ab", "times": 3})).await;
    assert_eq!(single_return(&repeated), &json!("ababab"));

    let structures = load(&runtime, "structures", Limits::default()).await;
    assert_structures_travel_in_envelopes(&structures).await;
    let malformed = run(
        &structures,
        "crop",
        json!({"image": "not-an-image", "width": 10}),
    )
    .await;
    assert_eq!(
        action_error(&malformed),
        "argument 'image': cannot expand STRUCTURE @mikro/image from \"not-an-image\": \
         an image reference starts with \"image:\""
    );
}

#[tokio::test]
async fn python_generators_yield_each_item_with_progress_and_logs() {
    let runtime = runtime();
    let generator = load(&runtime, "generator", Limits::default()).await;
    let counted = run(&generator, "count", json!({"n": 5})).await;
    assert_eq!(counted.outcome, Outcome::Completed);
    let values: Vec<&Value> = counted
        .yields
        .iter()
        .map(|returns| &returns["return0"])
        .collect();
    assert_eq!(
        values,
        [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)]
    );
    assert_eq!(counted.progress, [20, 40, 60, 80, 100]);
    assert!(
        counted
            .logs
            .contains(&(LogLevel::Info, "counted 5".to_owned())),
        "{:?}",
        counted.logs
    );

    let words = run(&generator, "enumerate_words", json!({"text": "to be"})).await;
    assert_eq!(
        words.yields,
        [
            json!({"return0": 0, "return1": "to"}),
            json!({"return0": 1, "return1": "be"})
        ]
    );

    // An error after some items: the items already yielded stay, the task fails.
    let fibonacci = run(&generator, "fibonacci", json!({"n": 100})).await;
    assert_eq!(fibonacci.yields.len(), 94);
    assert_eq!(
        fibonacci.yields[93]["return0"],
        json!(12_200_160_415_121_876_738_u64)
    );
    assert_eq!(
        action_error(&fibonacci),
        "Fibonacci number 94 does not fit in 64 bits"
    );

    // Cancelled while it sleeps between items.
    let control = TaskControl::new();
    let stopper = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let ticks = run_with(
        &generator,
        "ticks",
        json!({"n": 100, "seconds": 0.2}),
        &control,
    )
    .await;
    assert_eq!(ticks.outcome, Outcome::Cancelled);
    assert!(!ticks.yields.is_empty() && ticks.yields.len() < 100);
    assert!(started.elapsed() < Duration::from_secs(3));
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
        timeout: Duration::from_secs(3),
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
    assert_eq!(single_return(&add), &json!(42));
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
    assert_eq!(single_return(&env), &json!(0));
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

#[tokio::test]
async fn a_cancelled_python_generator_is_closed_and_its_finally_runs() {
    let runtime = runtime();
    // A grace far longer than the test: ending early proves the guest ended by itself.
    let generator = load(
        &runtime,
        "generator",
        Limits {
            cancel_grace: Duration::from_secs(60),
            ..Limits::default()
        },
    )
    .await;
    let control = TaskControl::new();
    let stopper = control.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stopper.cancel();
    });
    let started = Instant::now();
    let run = run_with(&generator, "until_cancelled", json!({}), &control).await;
    assert_eq!(run.outcome, Outcome::Cancelled, "{:?}", run.logs);
    assert!(!run.yields.is_empty());
    let (level, message) = run.logs.last().expect("the finally block logged");
    assert_eq!(*level, LogLevel::Info);
    assert_eq!(
        message,
        &format!("cancelled after {} items: cleaned up", run.yields.len())
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
